/**
 * What both OpenAI upstreams (Chat Completions, Responses) share: reading the SDK's stream under an
 * idle watchdog and the caller's signal, and turning every failure into a safe, fixed error code.
 * Each API supplies only its request and a translator from its events to model chunks.
 */
import { APIConnectionError, APIConnectionTimeoutError, APIError, OpenAIError } from "openai";
import { type ModelChunk, type ModelRequest, UpstreamError, type UpstreamErrorCode } from "./types.js";

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

/** Maps one upstream API's stream events onto model chunks. */
export interface StreamTranslator<T> {
  /** The chunks one event carries; throws an `UpstreamError` for a failure reported in the stream. */
  next(event: T): ModelChunk[];
  /** The stream ended: its last chunks (`finish` last), or throws when it ended before it finished. */
  end(): ModelChunk[];
}

type Phase = "connect" | "stream";

/** The lower of the request's and the operator's caps on output tokens (null and undefined: no cap). */
export function outputTokenCap(
  requested: number | null | undefined,
  operator: number | undefined,
): number | null | undefined {
  if (operator === undefined) return requested;
  return requested === undefined || requested === null ? operator : Math.min(requested, operator);
}

/**
 * Opens the upstream stream with `open` and yields what `translator` makes of it. `timeoutMs` limits
 * the time to response headers (the caller passes it to the SDK) and each wait for the next event.
 */
export async function* readUpstream<T>(
  request: Pick<ModelRequest, "signal">,
  timeoutMs: number,
  open: (signal: AbortSignal) => Promise<AsyncIterable<T>>,
  translator: StreamTranslator<T>,
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
    const stream = await open(controller.signal);
    phase = "stream";
    const iterator = stream[Symbol.asyncIterator]();
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
      yield* translator.next(next.value);
    }

    // An aborted SDK stream ends quietly rather than throwing, so every exit checks why it ended.
    if (signal.aborted) return;
    if (timedOut) throw safeUpstreamError("upstream_timeout");
    yield* translator.end();
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

function classify(error: unknown, phase: Phase): UpstreamErrorCode {
  if (error instanceof APIConnectionTimeoutError) return "upstream_timeout";
  if (error instanceof APIConnectionError) {
    return phase === "connect" ? "upstream_unavailable" : "upstream_disconnected";
  }
  if (error instanceof APIError) {
    // An error inside a stream (`data: {"error": …}`, or the Responses API's `error` event) has no
    // status: its own code says what it was.
    if (error.status === undefined) return codeForErrorCode(error.code ?? error.type ?? null);
    return codeForStatus(error.status);
  }
  if (phase === "connect") return "upstream_error";
  // Malformed JSON or an SDK complaint is the upstream misbehaving; anything else while reading
  // the body (undici's "terminated", ECONNRESET) is the connection going away.
  if (error instanceof SyntaxError || error instanceof OpenAIError) return "upstream_error";
  return "upstream_disconnected";
}

export function codeForStatus(status: number): UpstreamErrorCode {
  if (status === 401 || status === 403) return "upstream_auth";
  if (status === 429) return "upstream_rate_limited";
  if (status === 400 || status === 404 || status === 422) return "upstream_bad_request";
  if (status === 408) return "upstream_timeout";
  if (status >= 500) return "upstream_unavailable";
  return "upstream_error";
}

/**
 * An error reported inside a stream, by OpenAI's code (`rate_limit_exceeded`, `server_error`,
 * `invalid_prompt`, `invalid_image`…) or type (`invalid_request_error`, `server_error`…).
 */
export function codeForErrorCode(code: string | null): UpstreamErrorCode {
  if (code === null) return "upstream_error";
  if (code === "rate_limit_exceeded" || code === "insufficient_quota" || code === "requests")
    return "upstream_rate_limited";
  if (code === "server_error" || code === "overloaded" || code === "service_unavailable")
    return "upstream_unavailable";
  if (code === "invalid_api_key" || code === "authentication_error") return "upstream_auth";
  if (code === "timeout" || code === "vector_store_timeout") return "upstream_timeout";
  if (code.startsWith("invalid_") || code.startsWith("image_") || code.endsWith("_policy_violation"))
    return "upstream_bad_request";
  if (code === "bio_policy" || code === "data_residency_mismatch" || code === "context_length_exceeded")
    return "upstream_bad_request";
  return "upstream_error";
}
