/** Pure SSE frame encoding. Event data is JSON text (one line), so no line splitting is ever needed. */
import type { StoredEvent } from "../store/types.js";

/** A stored event with its encoded bodies cached: encoded once, shared by every connection. */
interface EncodedEvent extends StoredEvent {
  muxBody?: string;
  singleBody?: string;
}

/** `event:` and `data:` lines of a multiplexed frame; the connection prepends its own `id:` line. */
export function muxBody(sessionId: string, event: StoredEvent): string {
  const encoded = event as EncodedEvent;
  encoded.muxBody ??= `event: ${sessionId}:${event.type}\ndata: ${event.data}\n\n`;
  return encoded.muxBody;
}

export function singleBody(event: StoredEvent): string {
  const encoded = event as EncodedEvent;
  encoded.singleBody ??= `event: ${event.type}\ndata: ${event.data}\n\n`;
  return encoded.singleBody;
}

export function idLine(id: string): string {
  return `id: ${id}\n`;
}

/** A frame without an id: connection-level events and notes such as `unknown` or `gap`. */
export function plainFrame(eventName: string, data: unknown): string {
  return `event: ${eventName}\ndata: ${JSON.stringify(data)}\n\n`;
}

/*
 * `retry:` and comments are lines with no blank line after them: they join the block that follows (the
 * next event's). A blank line ends a block, and a block with no data is still a message to fetch-based
 * parsers: @microsoft/fetch-event-source dispatches every block, httpx-sse every block that sets `retry`
 * (or follows an `id`), so `retry: 2000\n\n` or `: ping\n\n` reached their users as empty messages.
 * EventSource and eventsource-parser act on `retry:` and comments line by line, wherever they stand.
 */

/** The reconnection delay for browsers, as a line of the block that follows it. */
export function retryLine(retryMs: number): string {
  return `retry: ${retryMs}\n`;
}

/** A comment (a heartbeat), as a line of the block that follows it. */
export function commentLine(text: string): string {
  return `: ${text}\n`;
}

export const SSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no",
});
