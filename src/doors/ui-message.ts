/**
 * Session events → the AI SDK's UI message stream (protocol v1: `data: {"type": …}` frames, then
 * `data: [DONE]`), as `DefaultChatTransport` reads it and `readUIMessageStream` builds the assistant
 * message from it. Pure: no I/O. A reconnect replays the run from its start (the transport's
 * `resumeStreamIsReplay`), so part ids need only be stable within one replay: they are counters.
 *
 * | session event   | chunks                                                                            |
 * | --------------- | --------------------------------------------------------------------------------- |
 * | start           | `start {messageId}`, `start-step`                                                 |
 * | reasoning       | `reasoning-start` (when no reasoning part is open), `reasoning-delta`              |
 * | token, refusal  | `text-start` (when no text part is open), `text-delta` (a refusal is the model's text too) |
 * | tool_call_delta | `tool-input-start {toolCallId, toolName}` once its id and name are known, `tool-input-delta` |
 * | tool_call       | `tool-input-available {input}` (`tool-input-error` when its arguments are not JSON) |
 * | usage           | nothing                                                                           |
 * | done            | the open part's `…-end`, `finish-step`, `finish {finishReason}`, `[DONE]`          |
 * | error           | the open part's `…-end`, `error {errorText: "<code>: <message>"}`, `[DONE]`         |
 * | cancelled       | the open part's `…-end`, `abort {reason}`, `[DONE]`                               |
 * | snapshot        | the session so far: a part each for its reasoning, text and tool calls            |
 *
 * Opening one kind of part closes the other kind's open part (`reasoning-end`, `text-end`), so the
 * message's parts follow the order the model produced them in.
 */
import type { SessionEvent } from "./events.js";

/** The chunks this door sends: a subset of the `ai` package's `UIMessageChunk` (checked in its tests). */
export type UIChunk =
  | { type: "start"; messageId?: string }
  | { type: "start-step" }
  | { type: "finish-step" }
  | { type: "text-start" | "text-end" | "reasoning-start" | "reasoning-end"; id: string }
  | { type: "text-delta" | "reasoning-delta"; id: string; delta: string }
  | { type: "tool-input-start"; toolCallId: string; toolName: string }
  | { type: "tool-input-delta"; toolCallId: string; inputTextDelta: string }
  | { type: "tool-input-available"; toolCallId: string; toolName: string; input: unknown }
  | { type: "tool-input-error"; toolCallId: string; toolName: string; input: unknown; errorText: string }
  | {
      type: "finish";
      finishReason?: "stop" | "length" | "content-filter" | "tool-calls" | "error" | "other";
    }
  | { type: "error"; errorText: string }
  | { type: "abort"; reason?: string };

export const UI_MESSAGE_STREAM_HEADER = "x-vercel-ai-ui-message-stream";
export const UI_MESSAGE_STREAM_VERSION = "v1";
export const UI_DONE = "[DONE]";

const FINISH_REASONS: Readonly<Record<string, Extract<UIChunk, { type: "finish" }>["finishReason"]>> = {
  stop: "stop",
  length: "length",
  content_filter: "content-filter",
  tool_calls: "tool-calls",
};

interface PendingCall {
  toolCallId: string | undefined;
  toolName: string | undefined;
  /** Argument fragments that came before the call's id and name. */
  held: string[];
  /** Every fragment so far: the input of a call whose `tool_call` never comes (folded, or a producer's). */
  text: string;
  started: boolean;
  available: boolean;
}

export interface UIMessageOptions {
  /** The assistant message's id in `start` (the session id). */
  messageId: string;
}

/**
 * A translator for one stream: each call takes the session's next event and answers the chunks it
 * becomes; `null` in the answer stands for the closing `[DONE]`.
 */
export function createUIMessageTranslator(
  options: UIMessageOptions,
): (event: SessionEvent) => Array<UIChunk | null> {
  let started = false;
  let ended = false;
  let open: { kind: "text" | "reasoning"; id: string } | null = null;
  let parts = 0;
  const calls = new Map<number, PendingCall>();

  const start = (out: Array<UIChunk | null>) => {
    if (started) return;
    started = true;
    out.push({ type: "start", messageId: options.messageId }, { type: "start-step" });
  };
  const close = (out: Array<UIChunk | null>) => {
    if (!open) return;
    out.push({ type: open.kind === "text" ? "text-end" : "reasoning-end", id: open.id });
    open = null;
  };
  const delta = (out: Array<UIChunk | null>, kind: "text" | "reasoning", text: string) => {
    if (open?.kind !== kind) {
      close(out);
      open = { kind, id: `${kind}-${parts++}` };
      out.push({ type: kind === "text" ? "text-start" : "reasoning-start", id: open.id });
    }
    out.push({ type: kind === "text" ? "text-delta" : "reasoning-delta", id: open.id, delta: text });
  };
  const callOf = (index: number): PendingCall => {
    let call = calls.get(index);
    if (!call) {
      call = {
        toolCallId: undefined,
        toolName: undefined,
        held: [],
        text: "",
        started: false,
        available: false,
      };
      calls.set(index, call);
    }
    return call;
  };
  const startCall = (out: Array<UIChunk | null>, call: PendingCall) => {
    if (call.started || call.toolCallId === undefined || call.toolName === undefined) return;
    close(out);
    call.started = true;
    out.push({ type: "tool-input-start", toolCallId: call.toolCallId, toolName: call.toolName });
    const held = call.held.join("");
    call.held = [];
    if (held !== "")
      out.push({ type: "tool-input-delta", toolCallId: call.toolCallId, inputTextDelta: held });
  };
  const available = (
    out: Array<UIChunk | null>,
    call: PendingCall,
    toolCallId: string,
    toolName: string,
    args: string,
  ) => {
    call.toolCallId ??= toolCallId;
    call.toolName ??= toolName;
    startCall(out, call);
    call.available = true;
    try {
      out.push({
        type: "tool-input-available",
        toolCallId: call.toolCallId,
        toolName: call.toolName,
        input: JSON.parse(args),
      });
    } catch {
      out.push({
        type: "tool-input-error",
        toolCallId: call.toolCallId,
        toolName: call.toolName,
        input: args,
        errorText: "the model's arguments are not valid JSON",
      });
    }
  };
  const finish = (out: Array<UIChunk | null>, last: UIChunk) => {
    start(out);
    close(out);
    if (last.type === "finish") out.push({ type: "finish-step" });
    out.push(last, null);
    ended = true;
  };

  return (event) => {
    const out: Array<UIChunk | null> = [];
    if (ended) return out;
    switch (event.type) {
      case "start":
        start(out);
        break;
      case "reasoning":
        start(out);
        if (event.content !== "") delta(out, "reasoning", event.content);
        break;
      case "token":
      case "refusal":
        start(out);
        if (event.content !== "") delta(out, "text", event.content);
        break;
      case "tool_call_delta": {
        start(out);
        const call = callOf(event.index);
        if (call.available) break;
        call.toolCallId ??= event.id;
        call.toolName ??= event.name;
        call.text += event.arguments;
        if (call.started) {
          if (event.arguments !== "")
            out.push({
              type: "tool-input-delta",
              toolCallId: call.toolCallId!,
              inputTextDelta: event.arguments,
            });
        } else {
          call.held.push(event.arguments);
          startCall(out, call);
        }
        break;
      }
      case "tool_call": {
        start(out);
        const call = callOf(event.index);
        // Again when an upstream that interleaves calls completes one again, whole: the part is updated.
        if (!call.available || call.text !== event.arguments) {
          call.text = event.arguments;
          available(out, call, event.id, event.name, event.arguments);
        }
        break;
      }
      case "done":
        for (const call of calls.values()) {
          if (call.started && !call.available)
            available(out, call, call.toolCallId!, call.toolName!, call.text);
        }
        finish(out, { type: "finish", finishReason: FINISH_REASONS[event.finishReason] ?? "other" });
        break;
      case "error":
        finish(out, { type: "error", errorText: `${event.code}: ${event.message}` });
        break;
      case "cancelled":
        finish(out, { type: "abort", reason: event.reason });
        break;
      case "snapshot":
        start(out);
        if (event.reasoning !== "") delta(out, "reasoning", event.reasoning);
        if (event.content !== "") delta(out, "text", event.content);
        if (event.refusal !== "") delta(out, "text", event.refusal);
        for (const folded of event.toolCalls) {
          const call = callOf(folded.index);
          call.toolCallId ??= folded.id;
          call.toolName ??= folded.name;
          call.held.push(folded.arguments);
          call.text += folded.arguments;
          startCall(out, call);
        }
        break;
      case "usage":
      case "other":
        break;
    }
    return out;
  };
}
