/**
 * Folding runs of consecutive `token` events into one frame, for a client that is far behind: the
 * same text in fewer frames. Only tokens whose data is exactly `{content}` are folded, so nothing a
 * producer added to a token is lost; the folded frame carries the position of the last token folded.
 */
import type { StoredEvent } from "../store/types.js";

export interface MergeResult {
  events: StoredEvent[];
  merged: number;
}

/** Stored data is `JSON.stringify` output, so a `{content}`-only object always has this shape. */
const CONTENT_ONLY_START = '{"content":"';
const CONTENT_ONLY_END = '"}';

function tokenContent(event: StoredEvent): string | null {
  if (event.type !== "token") return null;
  // Most tokens that carry more than `content` are told apart without parsing them.
  if (!event.data.startsWith(CONTENT_ONLY_START) || !event.data.endsWith(CONTENT_ONLY_END)) return null;
  try {
    const data: unknown = JSON.parse(event.data);
    if (data === null || typeof data !== "object") return null;
    const keys = Object.keys(data);
    const content = (data as { content?: unknown }).content;
    return keys.length === 1 && typeof content === "string" ? content : null;
  } catch {
    return null;
  }
}

export function mergeTokenRuns(events: readonly StoredEvent[]): MergeResult {
  const out: StoredEvent[] = [];
  let merged = 0;
  let run: { first: StoredEvent; lastId: string; parts: string[] } | null = null;
  const closeRun = () => {
    if (!run) return;
    out.push(
      run.parts.length === 1
        ? run.first
        : { id: run.lastId, type: "token", data: JSON.stringify({ content: run.parts.join("") }) },
    );
    merged += run.parts.length - 1;
    run = null;
  };
  for (const event of events) {
    const content = tokenContent(event);
    if (content === null) {
      closeRun();
      out.push(event);
    } else if (run) {
      run.parts.push(content);
      run.lastId = event.id;
    } else {
      run = { first: event, lastId: event.id, parts: [content] };
    }
  }
  closeRun();
  return { events: out, merged };
}
