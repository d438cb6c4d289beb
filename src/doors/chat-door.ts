/**
 * The AI SDK door (served by the front, http/front.ts):
 *
 *   POST /api/v1/chat                    `DefaultChatTransport`'s body → a run, answered as a UI message stream
 *   GET  /api/v1/chat/:chatId/stream     the chat's active run from its start, or 204 when it has none
 *
 * The chat's active run is kept in the backend (chat-runs.ts), so `reconnectToStream` (what
 * `useChat({resume: true})` calls on load) finds it on any instance.
 */
import { readIncarnation, requireScope } from "../auth/policy.js";
import { loggedError } from "../errors.js";
import type { AppContext } from "../http/context.js";
import { endEmpty, type StreamRequest } from "../http/stream-request.js";
import { admitConnection } from "../limits/admission.js";
import { type ChatRuns, createChatRuns } from "./chat-runs.js";
import { uiMessageFrames } from "./frames.js";
import { readableSession, startDoorRun, streamThroughDoor } from "./run.js";
import { UI_MESSAGE_STREAM_HEADER, UI_MESSAGE_STREAM_VERSION } from "./ui-message.js";
import { chatRequest } from "./ui-request.js";

const chatRunsByContext = new WeakMap<AppContext, ChatRuns>();

function chatRunsOf(context: AppContext): ChatRuns {
  let runs = chatRunsByContext.get(context);
  if (!runs) {
    runs = createChatRuns(context.subscriptions);
    chatRunsByContext.set(context, runs);
  }
  return runs;
}

const headersFor = (sessionId: string) => ({
  [UI_MESSAGE_STREAM_HEADER]: UI_MESSAGE_STREAM_VERSION,
  "X-Session-Id": sessionId,
});

export async function serveChat(context: AppContext, stream: StreamRequest, body: unknown): Promise<void> {
  const request = chatRequest(body);
  const chats = chatRunsOf(context);
  await chats.assertMayUse(stream.principal, request.chatId);
  const started = await startDoorRun(context, stream.principal, stream.ip, request.run);
  try {
    // Before the head: from then on a reconnect, on any instance, finds this run.
    const { pruned } = await chats.setActive(request.chatId, started.id, stream.principal.subject);
    pruned.catch((error: unknown) =>
      stream.logger.warn(
        { err: loggedError(error, () => context.store.isReady()), chatId: request.chatId },
        "could not drop the chat's older runs from its set; the next run retries",
      ),
    );
  } catch (error) {
    started.readerJoined();
    await started.admission.release();
    throw error;
  }
  await streamThroughDoor(context, stream, started.id, uiMessageFrames({ messageId: started.id }), {
    admission: started.admission,
    created: true,
    headers: headersFor(started.id),
    started,
  });
}

export async function serveChatStream(
  context: AppContext,
  chatId: string,
  stream: StreamRequest,
): Promise<void> {
  requireScope(stream.principal, "subscribe");
  const chats = chatRunsOf(context);
  await chats.assertMayUse(stream.principal, chatId);
  const active = await chats.active(chatId);
  const info = active === null ? null : await context.store.getSession(active);
  if (active === null || info === null || info.status !== "running") {
    endEmpty(stream, 204);
    return;
  }
  const readable = await readableSession(context, stream.principal, active);
  const admission = await admitConnection(context, stream.principal, stream.ip);
  context.metrics.resumes.inc({ kind: "session" });
  await streamThroughDoor(context, stream, active, uiMessageFrames({ messageId: active }), {
    admission,
    created: false,
    incarnation: readIncarnation(stream.principal, active, readable),
    headers: headersFor(active),
  });
}
