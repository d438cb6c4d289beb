/**
 * What a model provider is asked and what it yields: the run orchestrator turns chunks into session
 * events. Requests use the `openai` SDK's own Chat Completions types (type-only imports): the HTTP
 * layer validates bodies into exactly these shapes, and each provider maps them onto its upstream.
 */
import type {
  ChatCompletionAssistantMessageParam,
  ChatCompletionCreateParamsBase,
  ChatCompletionDeveloperMessageParam,
  ChatCompletionFunctionTool,
  ChatCompletionSystemMessageParam,
  ChatCompletionToolMessageParam,
  ChatCompletionUserMessageParam,
} from "openai/resources/chat/completions";

/** Every role of Chat Completions except the deprecated `function`. */
export type ChatMessage =
  | ChatCompletionSystemMessageParam
  | ChatCompletionDeveloperMessageParam
  | ChatCompletionUserMessageParam
  | ChatCompletionAssistantMessageParam
  | ChatCompletionToolMessageParam;

/** The request fields a run passes to its model as given (Chat Completions names). */
export interface ModelOptions {
  tools?: ChatCompletionFunctionTool[];
  tool_choice?: ChatCompletionCreateParamsBase["tool_choice"];
  parallel_tool_calls?: boolean;
  temperature?: number | null;
  top_p?: number | null;
  max_completion_tokens?: number | null;
  response_format?: ChatCompletionCreateParamsBase["response_format"];
  reasoning_effort?: ChatCompletionCreateParamsBase["reasoning_effort"];
  seed?: number | null;
  stop?: string | string[] | null;
}

/** The names of `ModelOptions`, in the contract's order (what a request may carry besides messages). */
export const MODEL_OPTION_FIELDS = [
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "temperature",
  "top_p",
  "max_completion_tokens",
  "response_format",
  "reasoning_effort",
  "seed",
  "stop",
] as const satisfies ReadonlyArray<keyof ModelOptions>;

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Reasoning tokens among the completion tokens, when the upstream reports them. */
  reasoning_tokens?: number;
  /** Prompt tokens served from the upstream's cache, when it reports them. */
  cached_tokens?: number;
}

/** A tool call as it streams: `arguments` is the next fragment of the JSON text. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}

/** A complete tool call: `arguments` is the whole JSON text, as the model wrote it. */
export interface ToolCall {
  index: number;
  id: string;
  name: string;
  arguments: string;
}

export type ModelChunk =
  | { kind: "token"; content: string }
  | { kind: "reasoning"; content: string }
  | { kind: "refusal"; content: string }
  | ({ kind: "tool_call_delta" } & ToolCallDelta)
  | ({ kind: "tool_call" } & ToolCall)
  | { kind: "usage"; usage: Usage }
  | { kind: "finish"; reason: string };

export interface ModelRequest {
  model: string;
  messages: ChatMessage[];
  /** Passed to the upstream as given; absent fields are left to the upstream's defaults. */
  options?: ModelOptions;
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
  /**
   * What of a valid request this provider cannot send (its upstream has no equivalent), as
   * `{field, reason}` with `field` a path in the request body (`seed`, `messages.2.content.0`), or
   * null when it can send all of it. Checked before a run starts: a refused field is a `400`, never
   * dropped.
   */
  unsupported?(request: Pick<ModelRequest, "messages" | "options">): UnsupportedField | null;
}

export interface UnsupportedField {
  field: string;
  reason: string;
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
