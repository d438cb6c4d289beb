/** What a model provider yields: the run orchestrator turns these into session events. */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export type ModelChunk =
  | { kind: "token"; content: string }
  | { kind: "usage"; usage: Usage }
  | { kind: "finish"; reason: string };

export interface ModelRequest {
  model: string;
  messages: ChatMessage[];
  signal: AbortSignal;
}

export interface ModelProvider {
  /** A label for logs and `start` events, e.g. "openai" or "simulated". */
  readonly name: string;
  /**
   * Streams one completion. Throws `UpstreamError` on any upstream failure, before or during the
   * stream. When `signal` aborts, it stops promptly (throwing or returning; the caller checks the signal).
   */
  stream(request: ModelRequest): AsyncIterable<ModelChunk>;
}

/** Safe, public error codes: upstream messages are never passed through verbatim. */
export type UpstreamErrorCode =
  | "upstream_error"
  | "upstream_auth"
  | "upstream_rate_limited"
  | "upstream_bad_request"
  | "upstream_timeout"
  | "upstream_unavailable"
  | "upstream_disconnected";

export class UpstreamError extends Error {
  override readonly name = "UpstreamError";
  constructor(
    readonly code: UpstreamErrorCode,
    message: string,
  ) {
    super(message);
  }
}
