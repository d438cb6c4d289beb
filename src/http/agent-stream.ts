/**
 * `POST /api/v1/agent/stream`: starts a run and streams it on this response. One function for both
 * ways a request reaches it (the Express route, and the plain front handler for the exact common form).
 */
import type { RunRequest } from "../agent/run-manager.js";
import { plainFrame } from "../sse/frames.js";
import type { AppContext } from "./context.js";
import { admitRun, assertAcceptingWork } from "./guards.js";
import { admitConnection, type StreamTarget, startStream } from "./streams.js";
import { agentStreamBody, parseOrThrow } from "./validation.js";

export async function serveAgentStream(
  context: AppContext,
  target: StreamTarget,
  ip: string | undefined,
  rawBody: unknown,
): Promise<void> {
  const body = parseOrThrow(agentStreamBody, rawBody);
  assertAcceptingWork(context);
  // Both admissions at once: every round trip here delays the run's first token.
  const [run, stream] = await Promise.allSettled([
    admitRun(context, target.principal, ip, undefined),
    admitConnection(context, target.principal, ip),
  ]);
  if (run.status === "rejected" || stream.status === "rejected") {
    if (run.status === "fulfilled") await run.value.slot?.release();
    if (stream.status === "fulfilled") await stream.value.release();
    throw run.status === "rejected" ? run.reason : (stream as PromiseRejectedResult).reason;
  }
  // The id is known: the run starts first (its upstream request is on its way), then the stream
  // opens and its reader joins the hub, in the same turn, so before the run's first append can be
  // acknowledged and handed over.
  const id = run.value.id!;
  const started = context.runs.start({ ...runRequest({ ...body, messages: undefined }), ...run.value });
  const connection = startStream(context, target, {
    admission: stream.value,
    kind: "agent",
    framing: "single",
    closeWhenAllEnded: true,
    tracker: null,
    headers: { "X-Session-Id": id },
  });
  const [outcome] = await Promise.all([started, connection.addNewSession(id, 0)]);
  if (outcome.kind !== "started") {
    // Cannot happen for a generated id; the stream is already open, so say it there.
    await run.value.slot?.release();
    connection.close();
    target.res.end(plainFrame("error", { code: "internal", message: "could not create the session" }));
    return;
  }
  connection.sessionsAdded();
}

/** The run a request body asks for. */
export function runRequest(body: {
  message?: string | undefined;
  messages?: RunRequest["messages"] | undefined;
  model?: string | undefined;
  instructions?: string | undefined;
  id?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
}): RunRequest {
  const messages = body.messages ?? [{ role: "user" as const, content: body.message ?? "" }];
  return {
    messages,
    ...(body.id !== undefined ? { id: body.id } : {}),
    ...(body.model !== undefined ? { model: body.model } : {}),
    ...(body.instructions !== undefined ? { instructions: body.instructions } : {}),
    ...(body.metadata !== undefined ? { metadata: body.metadata } : {}),
  };
}
