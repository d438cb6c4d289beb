import type OpenAI from "openai";
import { APIConnectionError, APIConnectionTimeoutError, APIError, OpenAIError } from "openai";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import {
  type ModelChunk,
  type ModelProvider,
  type ModelRequest,
  UpstreamError,
  type UpstreamErrorCode,
  type Usage,
} from "./types.js";

export interface OpenAIProviderOptions {
  client: OpenAI;
  /** Sent as `max_tokens` when set; otherwise the upstream's default applies. */
  maxOutputTokens?: number;
  /** Limit on time to response headers (the SDK's `timeout`) and on each wait for the next chunk. */
  timeoutMs: number;
}

/** Fixed, public sentences: upstream error text can carry keys, prompts or internals. */
const SAFE_MESSAGES: Readonly<Record<UpstreamErrorCode, string>> = {
  upstream_error: "The model provider returned an unexpected error.",
  upstream_auth: "The model provider rejected the gateway's credentials.",
  upstream_rate_limited: "The model provider is rate limiting requests; try again shortly.",
  upstream_bad_request: "The model provider rejected the request.",
  upstream_timeout: "The model provider did not respond in time.",
  upstream_unavailable: "The model provider is unavailable.",
  upstream_disconnected: "The connection to the model provider was lost mid-stream.",
};

export function safeUpstreamError(code: UpstreamErrorCode): UpstreamError {
  return new UpstreamError(code, SAFE_MESSAGES[code]);
}

export function createOpenAIProvider(options: OpenAIProviderOptions): ModelProvider {
  // The SDK rejects a non-integer timeout on every request; fail once, at startup, instead.
  if (!Number.isInteger(options.timeoutMs) || options.timeoutMs <= 0) {
    throw new RangeError("timeoutMs must be a positive integer");
  }
  return {
    name: "openai",
    stream: (request) => streamCompletion(options, request),
  };
}

type Phase = "connect" | "stream";

async function* streamCompletion(
  { client, maxOutputTokens, timeoutMs }: OpenAIProviderOptions,
  request: ModelRequest,
): AsyncGenerator<ModelChunk> {
  const { signal } = request;
  if (signal.aborted) return;

  // Our own controller: it lets the idle watchdog and an early `break` by the consumer cancel the
  // upstream request, and it keeps the SDK's never-removed listener off the caller's signal.
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });

  let phase: Phase = "connect";
  let timedOut = false;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;

  try {
    const stream = await client.chat.completions.create(
      {
        model: request.model,
        messages: request.messages,
        stream: true,
        stream_options: { include_usage: true },
        ...(maxOutputTokens === undefined ? {} : { max_tokens: maxOutputTokens }),
      },
      { signal: controller.signal, timeout: timeoutMs },
    );
    phase = "stream";

    const iterator = stream[Symbol.asyncIterator]();
    let finishReason: string | undefined;
    while (true) {
      // The SDK's timeout stops at response headers, so a stalled body would otherwise hang forever.
      // Armed only while waiting, so a slow consumer never counts against the upstream.
      idleTimer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeoutMs);
      const next = await iterator.next();
      clearTimeout(idleTimer);
      if (next.done) break;

      const chunk: ChatCompletionChunk = next.value;
      // The usage chunk has `choices: []`.
      const choice = chunk.choices[0];
      const content = choice?.delta?.content;
      if (typeof content === "string" && content !== "") yield { kind: "token", content };
      if (chunk.usage) yield { kind: "usage", usage: toUsage(chunk.usage) };
      if (choice?.finish_reason) finishReason = choice.finish_reason;
    }

    // An aborted SDK stream ends quietly rather than throwing, so every exit checks why it ended.
    if (signal.aborted) return;
    if (timedOut) throw safeUpstreamError("upstream_timeout");
    if (finishReason === undefined) throw safeUpstreamError("upstream_disconnected");
    // Held back until the end so that `finish` is always the last chunk, after usage.
    yield { kind: "finish", reason: finishReason };
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof UpstreamError) throw error;
    throw safeUpstreamError(timedOut ? "upstream_timeout" : classify(error, phase));
  } finally {
    clearTimeout(idleTimer);
    signal.removeEventListener("abort", onAbort);
    controller.abort();
  }
}

function toUsage(usage: NonNullable<ChatCompletionChunk["usage"]>): Usage {
  return {
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    total_tokens: usage.total_tokens,
  };
}

function classify(error: unknown, phase: Phase): UpstreamErrorCode {
  if (error instanceof APIConnectionTimeoutError) return "upstream_timeout";
  if (error instanceof APIConnectionError) {
    return phase === "connect" ? "upstream_unavailable" : "upstream_disconnected";
  }
  if (error instanceof APIError) return codeForStatus(error.status);
  if (phase === "connect") return "upstream_error";
  // Malformed JSON or an SDK complaint is the upstream misbehaving; anything else while reading
  // the body (undici's "terminated", ECONNRESET) is the connection going away.
  if (error instanceof SyntaxError || error instanceof OpenAIError) return "upstream_error";
  return "upstream_disconnected";
}

function codeForStatus(status: number | undefined): UpstreamErrorCode {
  if (status === undefined) return "upstream_error";
  if (status === 401 || status === 403) return "upstream_auth";
  if (status === 429) return "upstream_rate_limited";
  if (status === 400 || status === 404 || status === 422) return "upstream_bad_request";
  if (status >= 500) return "upstream_unavailable";
  return "upstream_error";
}
