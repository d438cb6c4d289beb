/**
 * The doors' streaming routes, as the front (http/front.ts) matches and serves them. The same
 * routing rule as the front's own routes: the path is matched exactly, its id percent-decoded (null
 * when that fails: a 400).
 *
 *   POST     /v1/chat/completions
 *   GET|HEAD /v1/chat/completions/:sessionId/stream
 *   POST     /v1/responses
 *   GET|HEAD /v1/responses/:id
 *   POST     /api/v1/chat
 *   GET|HEAD /api/v1/chat/:chatId/stream
 *
 * The other `/v1` routes (`GET /v1/models`, `POST /v1/responses/:id/cancel`) are cold: Express's
 * (doors/openai-router.ts). `/v1` answers errors in OpenAI's shape; `/api/v1/chat` in the gateway's.
 */
import type { AppContext } from "../http/context.js";
import type { StreamRequest } from "../http/stream-request.js";
import { serveChat, serveChatStream } from "./chat-door.js";
import { serveChatCompletions, serveChatResume, serveResponse, serveResponses } from "./openai-door.js";

export type DoorRoute =
  | { door: "chat-completions" }
  | { door: "chat-completions-stream"; id: string | null }
  | { door: "responses" }
  | { door: "response"; id: string | null }
  | { door: "ai-chat" }
  | { door: "ai-chat-stream"; id: string | null };

const CHAT_COMPLETIONS: DoorRoute = Object.freeze({ door: "chat-completions" });
const RESPONSES: DoorRoute = Object.freeze({ door: "responses" });
const AI_CHAT: DoorRoute = Object.freeze({ door: "ai-chat" });
const CHAT_COMPLETION_STREAM = /^\/v1\/chat\/completions\/([^/]+)\/stream$/;
const RESPONSE = /^\/v1\/responses\/([^/]+)$/;
const AI_CHAT_STREAM = /^\/api\/v1\/chat\/([^/]+)\/stream$/;

function decoded(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** The door route a path (without its query) names, or null. */
export function matchDoorRoute(path: string): DoorRoute | null {
  if (path.startsWith("/v1/")) {
    if (path === "/v1/chat/completions") return CHAT_COMPLETIONS;
    if (path === "/v1/responses") return RESPONSES;
    const stream = CHAT_COMPLETION_STREAM.exec(path);
    if (stream) return { door: "chat-completions-stream", id: decoded(stream[1]!) };
    const response = RESPONSE.exec(path);
    if (response) return { door: "response", id: decoded(response[1]!) };
    return null;
  }
  if (path === "/api/v1/chat") return AI_CHAT;
  const chat = AI_CHAT_STREAM.exec(path);
  return chat ? { door: "ai-chat-stream", id: decoded(chat[1]!) } : null;
}

const POST = ["POST"];
const GET = ["GET", "HEAD"];

export function doorMethods(route: DoorRoute): string[] {
  return route.door === "chat-completions" || route.door === "responses" || route.door === "ai-chat"
    ? POST
    : GET;
}

/** Whether the route answers errors in OpenAI's shape. */
export function isOpenAIRoute(route: DoorRoute): boolean {
  return route.door !== "ai-chat" && route.door !== "ai-chat-stream";
}

/** Serves a matched door route; `body` reads the request's JSON body (POST routes). */
export async function serveDoor(
  context: AppContext,
  route: DoorRoute,
  stream: StreamRequest,
  body: () => Promise<unknown>,
): Promise<void> {
  switch (route.door) {
    case "chat-completions":
      return serveChatCompletions(context, stream, await body());
    case "chat-completions-stream":
      return serveChatResume(context, route.id, stream);
    case "responses":
      return serveResponses(context, stream, await body());
    case "response":
      return serveResponse(context, route.id, stream);
    case "ai-chat":
      return serveChat(context, stream, await body());
    case "ai-chat-stream":
      return serveChatStream(context, route.id ?? "", stream);
  }
}
