/**
 * Session events as the front doors read them: a stored event (JSON text) parsed once into a typed
 * value. Producers may append anything, so parsing is tolerant: a field of the wrong type takes its
 * default, and an event of no known type is `other` (the doors skip it; the multiplexed stream still
 * carries it as given).
 */
import type { StoredEvent } from "../store/types.js";

export interface EventUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  reasoning_tokens?: number;
  cached_tokens?: number;
}

export interface EventToolCall {
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}

export type SessionEvent =
  | { type: "start"; model: string | null; createdAtMs: number | null }
  | { type: "token" | "reasoning" | "refusal"; content: string }
  | ({ type: "tool_call_delta" } & EventToolCall)
  | { type: "tool_call"; index: number; id: string; name: string; arguments: string }
  | { type: "usage"; usage: EventUsage }
  | { type: "done"; finishReason: string; totalTokens: number | null }
  | { type: "error"; code: string; message: string }
  | { type: "cancelled"; reason: string }
  | {
      type: "snapshot";
      content: string;
      reasoning: string;
      refusal: string;
      toolCalls: EventToolCall[];
      usage: EventUsage | null;
      /** Folded events by type: how many events the snapshot stands for. */
      folded: Readonly<Record<string, number>>;
    }
  | { type: "other" };

export type TerminalEvent = Extract<SessionEvent, { type: "done" | "error" | "cancelled" }>;

type Json = Record<string, unknown>;

const OTHER: SessionEvent = Object.freeze({ type: "other" });

function objectOf(text: string): Json | null {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Json) : null;
  } catch {
    return null;
  }
}

const text = (value: unknown, fallback = ""): string => (typeof value === "string" ? value : fallback);
const count = (value: unknown): number =>
  typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : 0;
const index = (value: unknown): number | null =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : null;

function usageOf(data: Json): EventUsage {
  const usage: EventUsage = {
    prompt_tokens: count(data.prompt_tokens),
    completion_tokens: count(data.completion_tokens),
    total_tokens: count(data.total_tokens),
  };
  if (typeof data.reasoning_tokens === "number") usage.reasoning_tokens = count(data.reasoning_tokens);
  if (typeof data.cached_tokens === "number") usage.cached_tokens = count(data.cached_tokens);
  return usage;
}

function toolCallOf(data: Json): EventToolCall | null {
  const at = index(data.index);
  if (at === null) return null;
  const call: EventToolCall = { index: at, arguments: text(data.arguments) };
  if (typeof data.id === "string") call.id = data.id;
  if (typeof data.name === "string") call.name = data.name;
  return call;
}

export function parseEvent(event: Pick<StoredEvent, "type" | "data">): SessionEvent {
  const data = objectOf(event.data);
  if (data === null) return OTHER;
  switch (event.type) {
    case "start": {
      const createdAt = typeof data.createdAt === "string" ? Date.parse(data.createdAt) : Number.NaN;
      return {
        type: "start",
        model: typeof data.model === "string" ? data.model : null,
        createdAtMs: Number.isNaN(createdAt) ? null : createdAt,
      };
    }
    case "token":
    case "reasoning":
    case "refusal":
      return { type: event.type, content: text(data.content) };
    case "tool_call_delta": {
      const call = toolCallOf(data);
      return call ? { type: "tool_call_delta", ...call } : OTHER;
    }
    case "tool_call": {
      const call = toolCallOf(data);
      if (!call) return OTHER;
      return {
        type: "tool_call",
        index: call.index,
        id: call.id ?? `call_${call.index}`,
        name: call.name ?? "",
        arguments: call.arguments,
      };
    }
    case "usage":
      return { type: "usage", usage: usageOf(data) };
    case "done":
      return {
        type: "done",
        finishReason: text(data.finish_reason, "stop"),
        totalTokens: typeof data.total_tokens === "number" ? data.total_tokens : null,
      };
    case "error":
      return { type: "error", code: text(data.code, "error"), message: text(data.message) };
    case "cancelled":
      return { type: "cancelled", reason: text(data.reason, "requested") };
    case "snapshot": {
      const calls = Array.isArray(data.tool_calls) ? data.tool_calls : [];
      const folded: Record<string, number> = {};
      if (data.folded !== null && typeof data.folded === "object") {
        for (const [type, n] of Object.entries(data.folded as Json)) folded[type] = count(n);
      }
      return {
        type: "snapshot",
        content: text(data.content),
        reasoning: text(data.reasoning),
        refusal: text(data.refusal),
        toolCalls: calls.flatMap((call) =>
          call !== null && typeof call === "object" ? (toolCallOf(call as Json) ?? []) : [],
        ),
        usage: data.usage !== null && typeof data.usage === "object" ? usageOf(data.usage as Json) : null,
        folded,
      };
    }
    default:
      return OTHER;
  }
}

export function isTerminal(event: SessionEvent): event is TerminalEvent {
  return event.type === "done" || event.type === "error" || event.type === "cancelled";
}

/** Seconds since the epoch, as OpenAI's `created` fields are. */
export function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}
