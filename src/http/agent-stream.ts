/**
 * `POST /api/v1/agent/stream`: starts a run and streams it on this response. One function for both
 * ways a request reaches it (the Express route, and the plain front handler for the exact common form).
 */
import { startDoorRun } from "../doors/run.js";
import type { AppContext } from "./context.js";
import { runRequest } from "./run-body.js";
import { type StreamTarget, startStream } from "./streams.js";
import { agentStreamBody, parseOrThrow } from "./validation.js";

export async function serveAgentStream(
  context: AppContext,
  target: StreamTarget,
  ip: string | undefined,
  rawBody: unknown,
): Promise<void> {
  const body = parseOrThrow(agentStreamBody, rawBody);
  // The head that names the session goes once the session exists: from then on every instance finds it.
  const started = await startDoorRun(context, target.principal, ip, runRequest(body));
  let opened = false;
  try {
    const connection = startStream(context, target, {
      admission: started.admission,
      kind: "agent",
      framing: "single",
      closeWhenAllEnded: true,
      tracker: null,
      headers: { "X-Session-Id": started.id },
    });
    opened = true;
    const joined = connection.addNewSession(started.id, 0);
    started.readerJoined();
    await joined;
    connection.sessionsAdded();
  } finally {
    // Whatever happened, the run's events must not wait for a reader that will never join.
    started.readerJoined();
    if (!opened) await started.admission.release();
  }
}
