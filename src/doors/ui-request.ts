/**
 * The body `DefaultChatTransport` sends (`{id, messages: UIMessage[], trigger, messageId}`, plus what
 * the app adds with the transport's `body` option: `model`, `instructions` and the run's model
 * options) → a run's request. UI messages become Chat Completions messages:
 *
 * | UI message part                                      | becomes                                          |
 * | ---------------------------------------------------- | ------------------------------------------------ |
 * | system / user `text`                                 | the message's text (parts joined)                |
 * | user `file` with an image media type                 | an `image_url` content part                      |
 * | assistant `text`                                     | the assistant message's text                     |
 * | assistant `reasoning`                                | nothing (no upstream takes reasoning as input)   |
 * | assistant `tool-<name>` / `dynamic-tool` with input  | a `tool_calls` entry of the assistant message    |
 * | … with `output-available` / `output-error`           | then a `tool` message with the output (JSON text) or the error text |
 * | a call without output yet                            | nothing (the upstream needs every call answered) |
 * | `step-start`                                         | starts the next assistant message (one per step) |
 * | anything else (`data-*`, sources, files of the assistant) | nothing                                      |
 */
import { z } from "zod";
import type { RunRequest } from "../agent/run-manager.js";
import { AppError } from "../errors.js";
import { runRequest } from "../http/run-body.js";
import { createSessionBody, parseOrThrow } from "../http/validation.js";

type Json = Record<string, unknown>;

const MAX_CHAT_ID = 256;

const uiMessage = z.object({
  id: z.string().max(MAX_CHAT_ID).optional(),
  role: z.enum(["system", "user", "assistant"]),
  parts: z.array(z.looseObject({ type: z.string() })).max(10_000),
  metadata: z.unknown().optional(),
});

type UIMessage = z.infer<typeof uiMessage>;

export const chatRequestBody = z.looseObject({
  id: z.string().min(1).max(MAX_CHAT_ID),
  messages: z.array(uiMessage).min(1).max(1000),
  trigger: z.enum(["submit-message", "regenerate-message"]).optional(),
  messageId: z.string().max(MAX_CHAT_ID).nullish(),
});

export interface ChatRequest {
  chatId: string;
  run: RunRequest;
}

const TRANSPORT_FIELDS = new Set(["id", "messages", "trigger", "messageId"]);

export function chatRequest(raw: unknown): ChatRequest {
  const body = parseOrThrow(chatRequestBody, raw);
  const extra: Json = {};
  for (const [key, value] of Object.entries(body)) if (!TRANSPORT_FIELDS.has(key)) extra[key] = value;
  // The app's own fields (the transport's `body` option) are a run's: the run's schema checks them.
  const run = parseOrThrow(createSessionBody, { ...extra, messages: modelMessages(body.messages) });
  return { chatId: body.id, run: { ...runRequest(run), metadata: { door: "ai-sdk", chatId: body.id } } };
}

const textOf = (parts: readonly Json[]): string =>
  parts
    .flatMap((part) => (part.type === "text" && typeof part.text === "string" ? [part.text] : []))
    .join("");

function isToolPart(part: Json): boolean {
  return part.type === "dynamic-tool" || (typeof part.type === "string" && part.type.startsWith("tool-"));
}

function toolNameOf(part: Json): string {
  if (part.type === "dynamic-tool") return typeof part.toolName === "string" ? part.toolName : "";
  return String(part.type).slice("tool-".length);
}

function outputText(part: Json): string {
  if (part.state === "output-error") return typeof part.errorText === "string" ? part.errorText : "error";
  return typeof part.output === "string" ? part.output : JSON.stringify(part.output ?? null);
}

/** One assistant step: its text, then its answered tool calls, then their results. */
function assistantStep(parts: readonly Json[], out: Json[]): void {
  const text = textOf(parts);
  const answered = parts.filter(
    (part) =>
      isToolPart(part) &&
      (part.state === "output-available" || part.state === "output-error") &&
      typeof part.toolCallId === "string",
  );
  if (text === "" && answered.length === 0) return;
  out.push({
    role: "assistant",
    content: text === "" ? null : text,
    ...(answered.length > 0
      ? {
          tool_calls: answered.map((part) => ({
            id: part.toolCallId,
            type: "function",
            function: { name: toolNameOf(part), arguments: JSON.stringify(part.input ?? {}) },
          })),
        }
      : {}),
  });
  for (const part of answered)
    out.push({ role: "tool", tool_call_id: part.toolCallId, content: outputText(part) });
}

function userContent(parts: readonly Json[]): string | Json[] {
  const images = parts.filter(
    (part) =>
      part.type === "file" && typeof part.mediaType === "string" && part.mediaType.startsWith("image/"),
  );
  if (images.length === 0) return textOf(parts);
  return parts.flatMap((part): Json[] => {
    if (part.type === "text" && typeof part.text === "string") return [{ type: "text", text: part.text }];
    if (images.includes(part)) return [{ type: "image_url", image_url: { url: part.url } }];
    return [];
  });
}

/** UI messages → the Chat Completions messages a run takes. */
export function modelMessages(messages: readonly UIMessage[]): Json[] {
  const out: Json[] = [];
  for (const message of messages) {
    const parts = message.parts as Json[];
    if (message.role === "system") out.push({ role: "system", content: textOf(parts) });
    else if (message.role === "user") out.push({ role: "user", content: userContent(parts) });
    else {
      let step: Json[] = [];
      for (const part of parts) {
        if (part.type === "step-start") {
          assistantStep(step, out);
          step = [];
        } else step.push(part);
      }
      assistantStep(step, out);
    }
  }
  if (out.length === 0) throw new AppError("invalid_request", "body.messages: no message has content");
  return out;
}
