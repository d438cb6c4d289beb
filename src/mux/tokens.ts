/**
 * Folding runs of consecutive deltas into one frame, for a client that is far behind: the same text in
 * fewer frames. What folds: `token` into `token`, `reasoning` into `reasoning` (both only when their
 * data is exactly `{content}`), and `tool_call_delta` into the delta just before it when both are of
 * the same call (`index`) and the later one is exactly `{index, arguments}`; deltas of different calls
 * never fold together. Nothing a producer added to an event is lost, and the folded frame carries the
 * position of the last event folded.
 */
import type { StoredEvent } from "../store/types.js";

export interface MergeResult {
  events: StoredEvent[];
  merged: number;
}

/** Stored data is `JSON.stringify` output, so the shapes that fold always start and end like this. */
const CONTENT_ONLY_START = '{"content":"';
const TOOL_DELTA_START = '{"index":';
const STRING_END = '"}';

/** A foldable event: `key` says what it folds with, `text` is its delta. */
interface Piece {
  key: string;
  text: string;
  /** Only a run's first piece may carry more than its delta (a tool call's id and name). */
  continues: boolean;
  /** The frame's data for the run's joined text. */
  frame(text: string): string;
}

function parse(data: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(data);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

const contentFrame = (text: string) => JSON.stringify({ content: text });

function pieceOf(event: StoredEvent): Piece | null {
  if (event.type === "token" || event.type === "reasoning") {
    // Most events that carry more than `content` are told apart without parsing them.
    if (!event.data.startsWith(CONTENT_ONLY_START) || !event.data.endsWith(STRING_END)) return null;
    const data = parse(event.data);
    if (!data || Object.keys(data).length !== 1 || typeof data.content !== "string") return null;
    return { key: event.type, text: data.content, continues: true, frame: contentFrame };
  }
  if (event.type === "tool_call_delta") {
    if (!event.data.startsWith(TOOL_DELTA_START) || !event.data.endsWith(STRING_END)) return null;
    const data = parse(event.data);
    if (!data || !Number.isInteger(data.index) || typeof data.arguments !== "string") return null;
    const keys = Object.keys(data);
    if (!keys.every((key) => key === "index" || key === "arguments" || key === "id" || key === "name"))
      return null;
    if (
      (data.id !== undefined && typeof data.id !== "string") ||
      (data.name !== undefined && typeof data.name !== "string")
    )
      return null;
    const head = {
      index: data.index,
      ...(data.id === undefined ? {} : { id: data.id }),
      ...(data.name === undefined ? {} : { name: data.name }),
    };
    return {
      key: `tool_call_delta:${data.index}`,
      text: data.arguments,
      continues: keys.length === 2,
      frame: (text) => JSON.stringify({ ...head, arguments: text }),
    };
  }
  return null;
}

export function mergeTokenRuns(events: readonly StoredEvent[]): MergeResult {
  const out: StoredEvent[] = [];
  let merged = 0;
  let run: { first: StoredEvent; piece: Piece; lastId: string; parts: string[] } | null = null;
  const closeRun = () => {
    if (!run) return;
    out.push(
      run.parts.length === 1
        ? run.first
        : { id: run.lastId, type: run.first.type, data: run.piece.frame(run.parts.join("")) },
    );
    merged += run.parts.length - 1;
    run = null;
  };
  for (const event of events) {
    const piece = pieceOf(event);
    if (piece === null) {
      closeRun();
      out.push(event);
    } else if (run && run.piece.key === piece.key && piece.continues) {
      run.parts.push(piece.text);
      run.lastId = event.id;
    } else {
      closeRun();
      run = { first: event, piece, lastId: event.id, parts: [piece.text] };
    }
  }
  closeRun();
  return { events: out, merged };
}
