/**
 * `POST /api/v1/agent/stream`: starts a run and streams it on this response. One function for both
 * ways a request reaches it (the Express route, and the plain front handler for the exact common form).
 */
import { AppError } from "../errors.js";
import { admitConnection, admitRun } from "../limits/admission.js";
import type { AppContext } from "./context.js";
import { assertAcceptingWork } from "./guards.js";
import { runRequest } from "./run-body.js";
import { type StreamTarget, startStream } from "./streams.js";
import { agentStreamBody, parseOrThrow } from "./validation.js";

export { runRequest } from "./run-body.js";

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
  // The run starts at once (its upstream request is on its way), but the head that names its session
  // waits for the session to exist: from then on every instance finds it. The run's events wait in
  // turn for this stream's reader to join the hub, so its first batch is handed over to it locally.
  const id = run.value.id!;
  let releaseWatch = () => {};
  let readerJoined: () => void = () => {};
  const readerReady = new Promise<void>((resolve) => {
    readerJoined = () => {
      resolve();
      releaseWatch();
    };
  });
  let opened = false;
  try {
    const starting = context.runs.start({
      ...runRequest(body),
      ...run.value,
      readerReady,
    });
    // The stream's notices are subscribed to while the session is created: after the session's
    // creation and the upstream request are on their way (the SUBSCRIBE is written at once).
    releaseWatch = context.hub.prewatch(id);
    const outcome = await starting;
    if (outcome.kind !== "started") {
      // Cannot happen for a generated id.
      await run.value.slot?.release();
      throw new AppError("internal", "could not create the session");
    }
    const connection = startStream(context, target, {
      admission: stream.value,
      kind: "agent",
      framing: "single",
      closeWhenAllEnded: true,
      tracker: null,
      headers: { "X-Session-Id": id },
    });
    opened = true;
    const joined = connection.addNewSession(id, 0);
    readerJoined();
    await joined;
    connection.sessionsAdded();
  } finally {
    // Whatever happened, the run's events must not wait for a reader that will never join.
    readerJoined();
    if (!opened) await stream.value.release();
  }
}
