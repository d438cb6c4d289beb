/**
 * Session events → OpenAI Chat Completions: the streaming chunks (`chat.completion.chunk`, then
 * `[DONE]`) and the assembled `chat.completion`. Pure: no I/O, no clock.
 *
 * | session event      | chunks (each one `data:` frame)                                              |
 * | ------------------ | ---------------------------------------------------------------------------- |
 * | start              | `delta: {role: "assistant", content: ""}`                                    |
 * | token              | `delta: {content}`                                                           |
 * | reasoning          | `delta: {reasoning_content}` (the field vLLM, DeepSeek and LiteLLM use)      |
 * | refusal            | `delta: {refusal}`                                                           |
 * | tool_call_delta    | `delta: {tool_calls: [{index, id?, type?, function: {name?, arguments}}]}`    |
 * | tool_call          | nothing when its deltas came; else the whole call as one delta               |
 * | usage              | nothing (kept for the end)                                                   |
 * | done               | `delta: {}, finish_reason`; then `choices: [], usage` when asked; `[DONE]`   |
 * | error              | `{error: {message, type, code, param}}` (the SDK throws it as an APIError)    |
 * | cancelled          | `{error: {… code: "cancelled"}}`                                             |
 * | snapshot           | the session so far: role, reasoning, content, refusal, tool calls (a delta each) |
 * | any other          | nothing                                                                      |
 *
 * The role chunk is sent before the first output even when a session has no `start` (an outside
 * producer's).
 */
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionMessageFunctionToolCall,
} from "openai/resources/chat/completions";
import type { CompletionUsage } from "openai/resources/completions";
import { type Answer, emptyAnswer, foldEvent } from "./answer.js";
import type { EventUsage, SessionEvent } from "./events.js";
import { unixSeconds } from "./events.js";
import { runErrorBody } from "./openai-errors.js";

export const DONE_DATA = "[DONE]";

export interface ChatDoorOptions {
  /** The session: chunk ids are `chatcmpl-<sessionId>`. */
  sessionId: string;
  /** Until a `start` event says which model ran. */
  model: string;
  /** Until a `start` event says when the run began (ms). */
  createdAtMs: number;
  /** `stream_options.include_usage`: a last chunk with `usage` and no choices. */
  includeUsage: boolean;
}

type Delta = ChatCompletionChunk.Choice.Delta & { reasoning_content?: string };
type FinishReason = ChatCompletionChunk.Choice["finish_reason"];

const FINISH_REASONS = new Set(["stop", "length", "tool_calls", "content_filter", "function_call"]);

export function finishReasonOf(reason: string): NonNullable<FinishReason> {
  return FINISH_REASONS.has(reason) ? (reason as NonNullable<FinishReason>) : "stop";
}

export function completionUsage(usage: EventUsage): CompletionUsage {
  return {
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    total_tokens: usage.total_tokens,
    ...(usage.reasoning_tokens === undefined
      ? {}
      : { completion_tokens_details: { reasoning_tokens: usage.reasoning_tokens } }),
    ...(usage.cached_tokens === undefined
      ? {}
      : { prompt_tokens_details: { cached_tokens: usage.cached_tokens } }),
  };
}

export const chatCompletionId = (sessionId: string) => `chatcmpl-${sessionId}`;

/**
 * A translator for one stream: each call takes the session's next event and answers the `data:`
 * payloads it becomes (JSON text, or `[DONE]`), in order. Calls must follow the session's order.
 */
export function createChatTranslator(options: ChatDoorOptions): (event: SessionEvent) => string[] {
  const id = chatCompletionId(options.sessionId);
  let model = options.model;
  let created = unixSeconds(options.createdAtMs);
  let roleSent = false;
  let usage: EventUsage | null = null;
  /** Tool calls (by index) whose deltas were streamed. */
  const streamedCalls = new Set<number>();

  const chunk = (delta: Delta, finishReason: FinishReason = null): string =>
    JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finishReason }],
    } satisfies ChatCompletionChunk);

  const role = (out: string[]): void => {
    if (roleSent) return;
    roleSent = true;
    out.push(chunk({ role: "assistant", content: "" }));
  };

  return (event) => {
    const out: string[] = [];
    switch (event.type) {
      case "start":
        if (event.model !== null) model = event.model;
        if (event.createdAtMs !== null) created = unixSeconds(event.createdAtMs);
        role(out);
        break;
      case "token":
        role(out);
        out.push(chunk({ content: event.content }));
        break;
      case "reasoning":
        role(out);
        out.push(chunk({ reasoning_content: event.content }));
        break;
      case "refusal":
        role(out);
        out.push(chunk({ refusal: event.content }));
        break;
      case "tool_call_delta": {
        role(out);
        const first = !streamedCalls.has(event.index);
        streamedCalls.add(event.index);
        out.push(
          chunk({
            tool_calls: [
              {
                index: event.index,
                ...(event.id === undefined ? {} : { id: event.id }),
                ...(first || event.id !== undefined ? { type: "function" as const } : {}),
                function: {
                  ...(event.name === undefined ? {} : { name: event.name }),
                  arguments: event.arguments,
                },
              },
            ],
          }),
        );
        break;
      }
      case "tool_call":
        if (streamedCalls.has(event.index)) break;
        role(out);
        streamedCalls.add(event.index);
        out.push(
          chunk({
            tool_calls: [
              {
                index: event.index,
                id: event.id,
                type: "function",
                function: { name: event.name, arguments: event.arguments },
              },
            ],
          }),
        );
        break;
      case "usage":
        usage = event.usage;
        break;
      case "done":
        role(out);
        out.push(chunk({}, finishReasonOf(event.finishReason)));
        if (options.includeUsage && usage) {
          out.push(
            JSON.stringify({
              id,
              object: "chat.completion.chunk",
              created,
              model,
              choices: [],
              usage: completionUsage(usage),
            } satisfies ChatCompletionChunk),
          );
        }
        out.push(DONE_DATA);
        break;
      case "error":
        out.push(JSON.stringify(runErrorBody(event.code, event.message)));
        break;
      case "cancelled":
        out.push(JSON.stringify(runErrorBody("cancelled", `the run was cancelled (${event.reason})`)));
        break;
      case "snapshot":
        role(out);
        if (event.reasoning !== "") out.push(chunk({ reasoning_content: event.reasoning }));
        if (event.content !== "") out.push(chunk({ content: event.content }));
        if (event.refusal !== "") out.push(chunk({ refusal: event.refusal }));
        for (const call of event.toolCalls) {
          streamedCalls.add(call.index);
          out.push(
            chunk({
              tool_calls: [
                {
                  index: call.index,
                  ...(call.id === undefined ? {} : { id: call.id }),
                  type: "function",
                  function: {
                    ...(call.name === undefined ? {} : { name: call.name }),
                    arguments: call.arguments,
                  },
                },
              ],
            }),
          );
        }
        if (event.usage) usage = event.usage;
        break;
      case "other":
        break;
    }
    return out;
  };
}

/** The assembled `chat.completion` of an ended run (`done`); errors are answered as errors instead. */
export function chatCompletionOf(
  answer: Answer,
  options: Omit<ChatDoorOptions, "includeUsage">,
): ChatCompletion {
  const finishReason = answer.terminal?.type === "done" ? answer.terminal.finishReason : "stop";
  const toolCalls: ChatCompletionMessageFunctionToolCall[] = answer.toolCalls.map((call) => ({
    id: call.id,
    type: "function",
    function: { name: call.name, arguments: call.arguments },
  }));
  const message: ChatCompletion.Choice["message"] & { reasoning_content?: string } = {
    role: "assistant",
    content: answer.content === "" && (toolCalls.length > 0 || answer.refusal !== "") ? null : answer.content,
    refusal: answer.refusal === "" ? null : answer.refusal,
    ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    ...(answer.reasoning === "" ? {} : { reasoning_content: answer.reasoning }),
  };
  return {
    id: chatCompletionId(options.sessionId),
    object: "chat.completion",
    created: unixSeconds(answer.createdAtMs ?? options.createdAtMs),
    model: answer.model ?? options.model,
    choices: [
      {
        index: 0,
        message,
        finish_reason: finishReasonOf(finishReason) as ChatCompletion.Choice["finish_reason"],
        logprobs: null,
      },
    ],
    ...(answer.usage ? { usage: completionUsage(answer.usage) } : {}),
  };
}

/** Folds a whole run's events into its `chat.completion`. */
export function assembleChatCompletion(
  events: Iterable<SessionEvent>,
  options: Omit<ChatDoorOptions, "includeUsage">,
): { completion: ChatCompletion; answer: Answer } {
  const answer = emptyAnswer();
  for (const event of events) foldEvent(answer, event);
  return { completion: chatCompletionOf(answer, options), answer };
}
