/** `GET /api/v1/sessions/:id/stream`: one session's events. */
import { assertMaySession, mayReadSession, readIncarnation, requireScope } from "../auth/policy.js";
import { errors } from "../errors.js";
import { admitConnection } from "../limits/admission.js";
import { hasReceivedEnd } from "../mux/stream-connection.js";
import { isPosition } from "../store/positions.js";
import type { AppContext } from "./context.js";
import { endEmpty, type StreamRequest } from "./stream-request.js";
import { resumeId, startStream } from "./streams.js";
import { parseSessionId } from "./validation.js";

export async function serveSessionStream(
  context: AppContext,
  rawId: unknown,
  stream: StreamRequest,
): Promise<void> {
  const id = parseSessionId(rawId);
  const after = resumeId(stream.req, stream.query);
  if (after !== undefined && !isPosition(after)) {
    throw errors.badRequest(
      "invalid_last_event_id",
      "Last-Event-ID must be a stream position like 1732300000000-0",
    );
  }
  if (context.state.draining) throw errors.draining();
  const principal = requireScope(stream.principal, "subscribe");
  const info = await context.store.getSession(id);
  assertMaySession(mayReadSession(principal, id, info), id);
  if (!info) throw errors.notFound(`no session ${id}`);
  if (hasReceivedEnd(info, after ?? null)) {
    endEmpty(stream, 204);
    return;
  }
  const admission = await admitConnection(context, principal, stream.ip);
  if (after !== undefined) context.metrics.resumes.inc({ kind: "session" });
  const connection = startStream(context, stream, {
    admission,
    kind: "session",
    framing: "single",
    closeWhenAllEnded: true,
    tracker: null,
  });
  await connection.addSession(
    id,
    0,
    after === undefined ? { kind: "none" } : { kind: "at", position: after },
    info,
    null,
    readIncarnation(principal, id, info),
  );
  connection.sessionsAdded();
}
