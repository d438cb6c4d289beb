/**
 * Compaction for the in-memory store, the twin of the fold in `lua/append-8.lua`: the events trimmed
 * from a session fold into its snapshot (what they said, and how many of each type there were), which
 * readers that are behind get in their place.
 */
import type { StoredEvent } from "./types.js";

export interface SnapshotToolCall {
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}

export interface Snapshot {
  /** Position of the last folded event: the snapshot stands in for everything up to it. */
  last: string;
  content: string;
  reasoning: string;
  refusal: string;
  toolCalls: SnapshotToolCall[];
  /** The last folded usage event's data (JSON text). */
  usage: string | null;
  folded: Map<string, number>;
}

export function createSnapshot(): Snapshot {
  return {
    last: "",
    content: "",
    reasoning: "",
    refusal: "",
    toolCalls: [],
    usage: null,
    folded: new Map(),
  };
}

function parsed(data: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(data);
    return value !== null && typeof value === "object" ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function toolCallAt(snapshot: Snapshot, index: number): SnapshotToolCall {
  let call = snapshot.toolCalls.find((candidate) => candidate.index === index);
  if (!call) {
    call = { index, arguments: "" };
    snapshot.toolCalls.push(call);
  }
  return call;
}

export function foldIntoSnapshot(snapshot: Snapshot, events: readonly StoredEvent[]): void {
  for (const event of events) {
    snapshot.folded.set(event.type, (snapshot.folded.get(event.type) ?? 0) + 1);
    snapshot.last = event.id;
    switch (event.type) {
      case "usage":
        snapshot.usage = event.data;
        break;
      case "token":
      case "reasoning":
      case "refusal": {
        const content = parsed(event.data)?.content;
        if (typeof content !== "string") break;
        if (event.type === "token") snapshot.content += content;
        else if (event.type === "reasoning") snapshot.reasoning += content;
        else snapshot.refusal += content;
        break;
      }
      case "tool_call_delta":
      case "tool_call": {
        const data = parsed(event.data);
        if (!data || typeof data.index !== "number") break;
        const call = toolCallAt(snapshot, data.index);
        if (typeof data.id === "string") call.id = data.id;
        if (typeof data.name === "string") call.name = data.name;
        if (typeof data.arguments === "string") {
          call.arguments = event.type === "tool_call" ? data.arguments : call.arguments + data.arguments;
        }
        break;
      }
    }
  }
}

export function snapshotEvent(snapshot: Snapshot): StoredEvent {
  const data = {
    content: snapshot.content,
    reasoning: snapshot.reasoning,
    refusal: snapshot.refusal,
    tool_calls: snapshot.toolCalls,
    usage: snapshot.usage === null ? null : (JSON.parse(snapshot.usage) as unknown),
    folded: Object.fromEntries(snapshot.folded),
  };
  return { id: snapshot.last, type: "snapshot", data: JSON.stringify(data) };
}
