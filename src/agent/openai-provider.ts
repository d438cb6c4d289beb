/**
 * The OpenAI upstream: Chat Completions by default, the Responses API with `api: "responses"`
 * (responses-provider.ts). Chat chunks map onto model chunks here: content, reasoning
 * (`reasoning_content` or `reasoning`, as DeepSeek, vLLM, Ollama and OpenRouter send it), refusals,
 * tool-call deltas and the calls they make up, usage with its details, and the finish reason.
 */
import type OpenAI from "openai";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import { createResponsesStream, responsesUnsupported } from "./responses-provider.js";
import type { ModelChunk, ModelProvider, ModelRequest, ToolCall, Usage } from "./types.js";
import { outputTokenCap, readUpstream, type StreamTranslator, safeUpstreamError } from "./upstream.js";

export { safeUpstreamError } from "./upstream.js";

export type OpenAIApi = "chat" | "responses";

export interface OpenAIProviderOptions {
  client: OpenAI;
  /** Which API to call: Chat Completions (default) or the Responses API. */
  api?: OpenAIApi;
  /**
   * The operator's cap on output tokens: sent as `max_completion_tokens` (`max_output_tokens` on the
   * Responses API), or as the request's own value when that is lower. Unset: the request's value or
   * the upstream's default.
   */
  maxOutputTokens?: number;
  /** Limit on time to response headers (the SDK's `timeout`) and on each wait for the next chunk. */
  timeoutMs: number;
}

export function createOpenAIProvider(options: OpenAIProviderOptions): ModelProvider {
  // The SDK rejects a non-integer timeout on every request; fail once, at startup, instead.
  if (!Number.isInteger(options.timeoutMs) || options.timeoutMs <= 0) {
    throw new RangeError("timeoutMs must be a positive integer");
  }
  if (options.api === "responses") {
    return {
      name: "openai",
      stream: (request) => createResponsesStream(options, request),
      unsupported: responsesUnsupported,
    };
  }
  return { name: "openai", stream: (request) => streamChat(options, request) };
}

function streamChat(
  { client, maxOutputTokens, timeoutMs }: OpenAIProviderOptions,
  request: ModelRequest,
): AsyncGenerator<ModelChunk> {
  const { max_completion_tokens, ...options } = request.options ?? {};
  const cap = outputTokenCap(max_completion_tokens, maxOutputTokens);
  return readUpstream(
    request,
    timeoutMs,
    (signal) =>
      client.chat.completions.create(
        {
          ...options,
          model: request.model,
          messages: request.messages,
          stream: true,
          stream_options: { include_usage: true },
          ...(cap === undefined ? {} : { max_completion_tokens: cap }),
        },
        { signal, timeout: timeoutMs },
      ),
    chatTranslator(),
  );
}

interface CallState {
  id?: string;
  name?: string;
  arguments: string;
  /** Its `tool_call` was yielded. */
  completed: boolean;
  /** Deltas arrived after it was completed (a server that interleaves calls): yielded again at the end. */
  changed: boolean;
}

/**
 * Chat chunks to model chunks. Only choice 0 is read: the gateway never asks for `n` > 1, and text
 * from other choices must not interleave into one answer. A call is complete, as the SDK's own
 * ChatCompletionStream sees it, when a delta of another call arrives or the choice finishes. A server
 * that interleaves calls (a delta for a call already completed) gets that call again, whole, at the
 * finish, and from then on calls complete only at the finish: the last `tool_call` of an index is it.
 */
export function chatTranslator(): StreamTranslator<ChatCompletionChunk> {
  let finishReason: string | undefined;
  const calls = new Map<number, CallState>();
  let current: number | undefined;
  /** A delta came for a call already completed: from then on calls complete only at the finish. */
  let interleaved = false;

  const complete = (index: number): ModelChunk[] => {
    const call = calls.get(index);
    if (!call || (call.completed && !call.changed)) return [];
    call.completed = true;
    call.changed = false;
    return [{ kind: "tool_call", ...toolCall(index, call) }];
  };
  const completeAll = (): ModelChunk[] =>
    [...calls.keys()].sort((a, b) => a - b).flatMap((index) => complete(index));

  return {
    next(chunk) {
      const out: ModelChunk[] = [];
      const choice = chunk.choices.find((candidate) => candidate.index === 0);
      if (choice) {
        const delta = choice.delta ?? {};
        const reasoning = reasoningOf(delta);
        if (reasoning !== "") out.push({ kind: "reasoning", content: reasoning });
        if (typeof delta.content === "string" && delta.content !== "")
          out.push({ kind: "token", content: delta.content });
        if (typeof delta.refusal === "string" && delta.refusal !== "")
          out.push({ kind: "refusal", content: delta.refusal });
        for (const part of delta.tool_calls ?? []) {
          if (!Number.isInteger(part.index) || part.index < 0) continue;
          if (calls.get(part.index)?.completed) interleaved = true;
          if (current !== undefined && current !== part.index && !interleaved) out.push(...complete(current));
          current = part.index;
          let call = calls.get(part.index);
          if (!call) {
            call = { arguments: "", completed: false, changed: false };
            calls.set(part.index, call);
          }
          const id =
            typeof part.id === "string" && part.id !== "" && part.id !== call.id ? part.id : undefined;
          const name = part.function?.name;
          const newName = typeof name === "string" && name !== "" && name !== call.name ? name : undefined;
          const fragment = typeof part.function?.arguments === "string" ? part.function.arguments : "";
          if (id === undefined && newName === undefined && fragment === "") continue;
          if (id !== undefined) call.id = id;
          if (newName !== undefined) call.name = newName;
          call.arguments += fragment;
          if (call.completed) call.changed = true;
          out.push({
            kind: "tool_call_delta",
            index: part.index,
            ...(id === undefined ? {} : { id }),
            ...(newName === undefined ? {} : { name: newName }),
            arguments: fragment,
          });
        }
        if (choice.finish_reason) {
          finishReason = choice.finish_reason;
          out.push(...completeAll());
        }
      }
      if (chunk.usage) out.push({ kind: "usage", usage: chatUsage(chunk.usage) });
      return out;
    },
    end() {
      if (finishReason === undefined) throw safeUpstreamError("upstream_disconnected");
      // Held back until the end so that `finish` is always the last chunk, after usage.
      return [...completeAll(), { kind: "finish", reason: finishReason }];
    },
  };
}

function toolCall(index: number, call: CallState): ToolCall {
  // A call without an id (some compatible servers send none) still needs one to be answered.
  return { index, id: call.id ?? `call_${index}`, name: call.name ?? "", arguments: call.arguments };
}

/** Reasoning text of a delta: not in OpenAI's types, sent by compatible servers under either name. */
function reasoningOf(delta: object): string {
  const fields = delta as { reasoning_content?: unknown; reasoning?: unknown };
  if (typeof fields.reasoning_content === "string") return fields.reasoning_content;
  if (typeof fields.reasoning === "string") return fields.reasoning;
  return "";
}

function chatUsage(usage: NonNullable<ChatCompletionChunk["usage"]>): Usage {
  const reasoning = usage.completion_tokens_details?.reasoning_tokens;
  const cached = usage.prompt_tokens_details?.cached_tokens;
  return {
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    total_tokens: usage.total_tokens,
    ...(typeof reasoning === "number" ? { reasoning_tokens: reasoning } : {}),
    ...(typeof cached === "number" ? { cached_tokens: cached } : {}),
  };
}
