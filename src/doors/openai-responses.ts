/**
 * Session events → the OpenAI Responses API: its streaming events, each with its `sequence_number`,
 * and the `response` object. Pure: no I/O, no clock.
 *
 * | session event   | Responses events                                                                  |
 * | --------------- | --------------------------------------------------------------------------------- |
 * | (the first one) | `response.created`, `response.in_progress`                                        |
 * | reasoning       | first: `output_item.added` (reasoning) + `reasoning_summary_part.added`; each: `reasoning_summary_text.delta` |
 * | token           | first: `output_item.added` (message, unless open) + `content_part.added` (output_text); each: `output_text.delta` |
 * | refusal         | first: `output_item.added` (message, unless open) + `content_part.added` (refusal); each: `refusal.delta` |
 * | tool_call_delta | first of its index: `output_item.added` (function_call); each: `function_call_arguments.delta` |
 * | tool_call       | `output_item.added` if none came; `function_call_arguments.done` + `output_item.done` (again for a call completed again) |
 * | usage           | nothing (it goes into the final `response.usage`)                                 |
 * | done            | every open item's `…done` events, then `response.completed` (`response.incomplete` for finish `length` or `content_filter`) |
 * | error           | the open items' `…done`, an `error` event {code, message}, then `response.failed` |
 * | cancelled       | the open items' `…done`, then `response.cancelled` (status `cancelled`; not in the SDK's union: the name of OpenAI's webhook event) |
 * | snapshot        | the session so far: the items it opened, a delta each with their whole text       |
 *
 * Sequence numbers. A resume (`starting_after=N`) replays the session from its start and drops what
 * is numbered N or less, so the numbering must be a function of the session's events: every instance
 * and every reader numbers them alike. Items stay open until the response ends (function calls until
 * their `tool_call`), so how many events a prefix of the session yields depends only on how many
 * events of each type it holds: a compacted session's snapshot (`folded` counts them) tells the
 * number the next event takes, and the events after it are numbered exactly as a reader who never
 * fell behind saw them. The snapshot's own events are numbered just below that. (The snapshot does
 * not keep the order in which items opened: it is taken to be the order models produce them in,
 * reasoning, then text or a refusal, then tool calls by index. In another order the numbers after a
 * snapshot still increase, and the text is whole.)
 */
import type {
  Response,
  ResponseFunctionToolCall,
  ResponseOutputItem,
  ResponseOutputMessage,
  ResponseReasoningItem,
  ResponseStatus,
  ResponseStreamEvent,
  ResponseUsage,
} from "openai/resources/responses/responses";
import type { EventUsage, SessionEvent } from "./events.js";
import { unixSeconds } from "./events.js";

export interface ResponsesDoorOptions {
  sessionId: string;
  /** Until a `start` event says which model ran. */
  model: string;
  /** Until a `start` event says when the run began (ms). */
  createdAtMs: number;
}

/** `response.cancelled`: what a cancelled run ends with (the SDK's union has no event for it). */
export interface ResponseCancelledEvent {
  type: "response.cancelled";
  response: Response;
  sequence_number: number;
}

export type DoorResponseEvent = ResponseStreamEvent | ResponseCancelledEvent;

/** An event before it is numbered (distributed over the union, so each member keeps its fields). */
type Unnumbered<T> = T extends unknown ? Omit<T, "sequence_number"> : never;

export const responseId = (sessionId: string) => `resp_${sessionId}`;

/** The session id inside `resp_<sessionId>`, or null. */
export function sessionIdOfResponse(id: string): string | null {
  return id.startsWith("resp_") && id.length > 5 ? id.slice(5) : null;
}

interface ReasoningState {
  kind: "reasoning";
  outputIndex: number;
  text: string;
  done: boolean;
}
interface MessagePart {
  kind: "output_text" | "refusal";
  text: string;
}
interface MessageState {
  kind: "message";
  outputIndex: number;
  parts: MessagePart[];
  done: boolean;
}
interface CallState {
  kind: "function_call";
  outputIndex: number;
  index: number;
  callId: string;
  name: string;
  arguments: string;
  done: boolean;
}
type ItemState = ReasoningState | MessageState | CallState;

const count = (folded: Readonly<Record<string, number>>, type: string) => folded[type] ?? 0;

/** How many Responses events the folded prefix of a session yielded (see the numbering above). */
export function eventsYieldedBy(snapshot: Extract<SessionEvent, { type: "snapshot" }>): number {
  const { folded } = snapshot;
  const total = Object.values(folded).reduce((sum, n) => sum + n, 0);
  if (total === 0) return 0;
  const reasoning = count(folded, "reasoning");
  const tokens = count(folded, "token");
  const refusals = count(folded, "refusal");
  const calls = new Set(snapshot.toolCalls.map((call) => call.index)).size;
  return (
    2 +
    (reasoning > 0 ? 2 + reasoning : 0) +
    (tokens + refusals > 0 ? 1 : 0) +
    (tokens > 0 ? 1 + tokens : 0) +
    (refusals > 0 ? 1 + refusals : 0) +
    calls +
    count(folded, "tool_call_delta") +
    2 * count(folded, "tool_call")
  );
}

function responseUsage(usage: EventUsage): ResponseUsage {
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: usage.cached_tokens ?? 0, cache_write_tokens: 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: usage.reasoning_tokens ?? 0 },
    total_tokens: usage.total_tokens,
  };
}

export interface ResponsesTranslator {
  /** The Responses events one session event becomes, numbered, in order. */
  next(event: SessionEvent): DoorResponseEvent[];
  /** The response object as it stands. */
  response(): Response;
  /** The status so far: `in_progress` until the session's terminal event. */
  readonly status: ResponseStatus;
}

export function createResponsesTranslator(options: ResponsesDoorOptions): ResponsesTranslator {
  const id = responseId(options.sessionId);
  let model = options.model;
  let createdAtMs = options.createdAtMs;
  let sequence = 0;
  let opened = false;
  let status: ResponseStatus = "in_progress";
  let usage: EventUsage | null = null;
  let error: Response["error"] = null;
  let incomplete: Response["incomplete_details"] = null;
  const items: ItemState[] = [];
  let reasoning: ReasoningState | null = null;
  let message: MessageState | null = null;
  const calls = new Map<number, CallState>();

  const itemId = (item: ItemState): string =>
    item.kind === "reasoning"
      ? `rs_${options.sessionId}`
      : item.kind === "message"
        ? `msg_${options.sessionId}`
        : `fc_${options.sessionId}_${item.index}`;
  const itemStatus = (item: ItemState) =>
    item.done
      ? status === "in_progress" || status === "completed"
        ? "completed"
        : "incomplete"
      : "in_progress";

  function outputItem(item: ItemState): ResponseOutputItem {
    if (item.kind === "reasoning") {
      return {
        type: "reasoning",
        id: itemId(item),
        summary: [{ type: "summary_text", text: item.text }],
        status: itemStatus(item),
      } satisfies ResponseReasoningItem;
    }
    if (item.kind === "message") {
      return {
        type: "message",
        id: itemId(item),
        role: "assistant",
        status: itemStatus(item),
        content: item.parts.map((part) =>
          part.kind === "output_text"
            ? { type: "output_text", text: part.text, annotations: [] }
            : { type: "refusal", refusal: part.text },
        ),
      } satisfies ResponseOutputMessage;
    }
    return {
      type: "function_call",
      id: itemId(item),
      call_id: item.callId,
      name: item.name,
      arguments: item.arguments,
      status: itemStatus(item),
    } satisfies ResponseFunctionToolCall;
  }

  function response(): Response {
    const output = items.map(outputItem);
    const outputText = items
      .flatMap((item) => (item.kind === "message" ? item.parts : []))
      .filter((part) => part.kind === "output_text")
      .map((part) => part.text)
      .join("");
    return {
      id,
      object: "response",
      created_at: unixSeconds(createdAtMs),
      status,
      model,
      output,
      output_text: outputText,
      error,
      incomplete_details: incomplete,
      instructions: null,
      metadata: {},
      parallel_tool_calls: true,
      temperature: null,
      tool_choice: "auto",
      tools: [],
      top_p: null,
      ...(usage ? { usage: responseUsage(usage) } : {}),
    };
  }

  /** Numbers an event (the caller pushes it). */
  const numbered = (event: Unnumbered<DoorResponseEvent>): DoorResponseEvent =>
    ({ ...event, sequence_number: sequence++ }) as DoorResponseEvent;

  function open(out: DoorResponseEvent[]): void {
    if (opened) return;
    opened = true;
    out.push(numbered({ type: "response.created", response: response() }));
    out.push(numbered({ type: "response.in_progress", response: response() }));
  }

  function addItem<T extends ItemState>(out: DoorResponseEvent[], item: T): T {
    items.push(item);
    out.push(
      numbered({
        type: "response.output_item.added",
        output_index: item.outputIndex,
        item: outputItem(item),
      }),
    );
    return item;
  }

  function reasoningItem(out: DoorResponseEvent[]): ReasoningState {
    if (reasoning) return reasoning;
    reasoning = addItem(out, { kind: "reasoning", outputIndex: items.length, text: "", done: false });
    out.push(
      numbered({
        type: "response.reasoning_summary_part.added",
        item_id: itemId(reasoning),
        output_index: reasoning.outputIndex,
        summary_index: 0,
        part: { type: "summary_text", text: "" },
      }),
    );
    return reasoning;
  }

  function messagePart(out: DoorResponseEvent[], kind: MessagePart["kind"]): [MessageState, number] {
    message ??= addItem(out, { kind: "message", outputIndex: items.length, parts: [], done: false });
    let at = message.parts.findIndex((part) => part.kind === kind);
    if (at < 0) {
      at = message.parts.push({ kind, text: "" }) - 1;
      out.push(
        numbered({
          type: "response.content_part.added",
          item_id: itemId(message),
          output_index: message.outputIndex,
          content_index: at,
          part:
            kind === "output_text"
              ? { type: "output_text", text: "", annotations: [] }
              : { type: "refusal", refusal: "" },
        }),
      );
    }
    return [message, at];
  }

  function callItem(out: DoorResponseEvent[], index: number, callId?: string, name?: string): CallState {
    let call = calls.get(index);
    if (!call) {
      call = {
        kind: "function_call",
        outputIndex: items.length,
        index,
        callId: callId ?? `call_${index}`,
        name: name ?? "",
        arguments: "",
        done: false,
      };
      calls.set(index, call);
      addItem(out, call);
    }
    return call;
  }

  function closeCall(out: DoorResponseEvent[], call: CallState): void {
    if (call.done) return;
    call.done = true;
    out.push(
      numbered({
        type: "response.function_call_arguments.done",
        item_id: itemId(call),
        output_index: call.outputIndex,
        name: call.name,
        arguments: call.arguments,
      }),
    );
    out.push(
      numbered({ type: "response.output_item.done", output_index: call.outputIndex, item: outputItem(call) }),
    );
  }

  function closeAll(out: DoorResponseEvent[]): void {
    for (const item of items) {
      if (item.done) continue;
      if (item.kind === "function_call") {
        closeCall(out, item);
        continue;
      }
      item.done = true;
      const itemRef = itemId(item);
      if (item.kind === "reasoning") {
        const base = { item_id: itemRef, output_index: item.outputIndex, summary_index: 0 };
        out.push(numbered({ type: "response.reasoning_summary_text.done", ...base, text: item.text }));
        out.push(
          numbered({
            type: "response.reasoning_summary_part.done",
            ...base,
            part: { type: "summary_text", text: item.text },
          }),
        );
      } else {
        for (const [at, part] of item.parts.entries()) {
          const base = { item_id: itemRef, output_index: item.outputIndex, content_index: at };
          if (part.kind === "output_text") {
            out.push(numbered({ type: "response.output_text.done", ...base, text: part.text, logprobs: [] }));
            out.push(
              numbered({
                type: "response.content_part.done",
                ...base,
                part: { type: "output_text", text: part.text, annotations: [] },
              }),
            );
          } else {
            out.push(numbered({ type: "response.refusal.done", ...base, refusal: part.text }));
            out.push(
              numbered({
                type: "response.content_part.done",
                ...base,
                part: { type: "refusal", refusal: part.text },
              }),
            );
          }
        }
      }
      out.push(
        numbered({
          type: "response.output_item.done",
          output_index: item.outputIndex,
          item: outputItem(item),
        }),
      );
    }
  }

  function snapshot(out: DoorResponseEvent[], event: Extract<SessionEvent, { type: "snapshot" }>): void {
    const yielded = eventsYieldedBy(event);
    const first = out.length;
    open(out);
    if (count(event.folded, "reasoning") > 0) {
      const item = reasoningItem(out);
      item.text = event.reasoning;
      out.push(textDelta("response.reasoning_summary_text.delta", item, event.reasoning));
    }
    if (count(event.folded, "token") > 0) {
      const [item, at] = messagePart(out, "output_text");
      item.parts[at]!.text = event.content;
      out.push(contentDelta("response.output_text.delta", item, at, event.content));
    }
    if (count(event.folded, "refusal") > 0) {
      const [item, at] = messagePart(out, "refusal");
      item.parts[at]!.text = event.refusal;
      out.push(contentDelta("response.refusal.delta", item, at, event.refusal));
    }
    // The snapshot does not say which folded calls were complete: calls complete in order.
    let complete = count(event.folded, "tool_call");
    for (const folded of [...event.toolCalls].sort((a, b) => a.index - b.index)) {
      const call = callItem(out, folded.index, folded.id, folded.name);
      call.arguments = folded.arguments;
      out.push(argumentsDelta(call, folded.arguments));
      if (complete-- > 0) closeCall(out, call);
    }
    // Renumber what the snapshot yielded so that it ends just below the number the prefix reached.
    const made = out.length - first;
    const base = Math.max(0, yielded - made);
    for (let i = first; i < out.length; i++) out[i]!.sequence_number = base + (i - first);
    sequence = Math.max(yielded, base + made);
  }

  function textDelta(
    type: "response.reasoning_summary_text.delta",
    item: ReasoningState,
    delta: string,
  ): DoorResponseEvent {
    return numbered({ type, item_id: itemId(item), output_index: item.outputIndex, summary_index: 0, delta });
  }

  function contentDelta(
    type: "response.output_text.delta" | "response.refusal.delta",
    item: MessageState,
    at: number,
    delta: string,
  ): DoorResponseEvent {
    const base = { item_id: itemId(item), output_index: item.outputIndex, content_index: at, delta };
    return type === "response.output_text.delta"
      ? numbered({ type, ...base, logprobs: [] })
      : numbered({ type, ...base });
  }

  function argumentsDelta(call: CallState, delta: string): DoorResponseEvent {
    return numbered({
      type: "response.function_call_arguments.delta",
      item_id: itemId(call),
      output_index: call.outputIndex,
      delta,
    });
  }

  function end(
    out: DoorResponseEvent[],
    event: Extract<SessionEvent, { type: "done" | "error" | "cancelled" }>,
  ) {
    if (event.type === "done") {
      if (event.finishReason === "length" || event.finishReason === "content_filter") {
        status = "incomplete";
        incomplete = { reason: event.finishReason === "length" ? "max_output_tokens" : "content_filter" };
      } else status = "completed";
    } else if (event.type === "error") {
      status = "failed";
      error = {
        code: event.code === "upstream_rate_limited" ? "rate_limit_exceeded" : "server_error",
        message: `${event.code}: ${event.message}`,
      };
    } else status = "cancelled";
    closeAll(out);
    if (event.type === "error") {
      out.push(numbered({ type: "error", code: event.code, message: event.message, param: null }));
    }
    const type =
      status === "completed"
        ? "response.completed"
        : status === "incomplete"
          ? "response.incomplete"
          : status === "failed"
            ? "response.failed"
            : "response.cancelled";
    out.push(numbered({ type, response: response() }));
  }

  return {
    get status() {
      return status;
    },
    response,
    next(event) {
      const out: DoorResponseEvent[] = [];
      if (status !== "in_progress") return out;
      switch (event.type) {
        case "start":
          if (event.model !== null) model = event.model;
          if (event.createdAtMs !== null) createdAtMs = event.createdAtMs;
          open(out);
          break;
        case "reasoning": {
          open(out);
          const item = reasoningItem(out);
          item.text += event.content;
          out.push(textDelta("response.reasoning_summary_text.delta", item, event.content));
          break;
        }
        case "token":
        case "refusal": {
          open(out);
          const [item, at] = messagePart(out, event.type === "token" ? "output_text" : "refusal");
          item.parts[at]!.text += event.content;
          out.push(
            contentDelta(
              event.type === "token" ? "response.output_text.delta" : "response.refusal.delta",
              item,
              at,
              event.content,
            ),
          );
          break;
        }
        case "tool_call_delta": {
          open(out);
          const call = callItem(out, event.index, event.id, event.name);
          if (event.id !== undefined) call.callId = event.id;
          if (event.name !== undefined) call.name = event.name;
          call.arguments += event.arguments;
          out.push(argumentsDelta(call, event.arguments));
          break;
        }
        case "tool_call": {
          open(out);
          const call = callItem(out, event.index, event.id, event.name);
          call.callId = event.id;
          call.name = event.name;
          call.arguments = event.arguments;
          // A call completed again (an upstream that interleaves calls sends it again, whole) is
          // done again: every `tool_call` yields two events, which the numbering counts on.
          call.done = false;
          closeCall(out, call);
          break;
        }
        case "usage":
          open(out);
          usage = event.usage;
          break;
        case "done":
        case "error":
        case "cancelled":
          open(out);
          end(out, event);
          break;
        case "snapshot":
          if (opened) break; // Only ever the first event of a read.
          snapshot(out, event);
          if (event.usage) usage = event.usage;
          break;
        case "other":
          open(out);
          break;
      }
      return out;
    },
  };
}
