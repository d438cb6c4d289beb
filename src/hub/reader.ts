import { comparePositions } from "../store/positions.js";
import type { StoredEvent } from "../store/types.js";

/**
 * What the hub sees of a reader (one session as read by one connection): it pushes every batch
 * appended to the session, and says when notices may have been missed. Like better-sse's Channel,
 * which only calls `session.push`, the hub never reads or writes a reader's state: the reader's
 * owner does, applying `continuesAt` to what is pushed.
 */
export interface Reader {
  readonly sessionId: string;
  /**
   * A batch appended to the session, in order; `prevId` is the session's last position before it ("" when
   * it was empty), `createdAt` the incarnation of the session it was appended to (null: not known).
   * Returns true when the reader took the whole batch live (for the delivery-latency metric).
   */
  push(prevId: string, events: readonly StoredEvent[], createdAt: number | null): boolean;
  /** Notices may have been missed (the notification link reconnected): re-read from the store. */
  resync(): void;
}

/** `continuesAt`'s answer when the batch does not continue the reader: it missed something. */
export const MISSED = -1;

/**
 * The position rule: where a batch appended after `prevId` continues a reader that has everything up to
 * `position` (null: nothing yet). 0 when it follows the reader exactly; k > 0 when the reader already has
 * the batch's first k events (`events.length`: all of them), as when a store read or the local hand-over
 * of a run's batch came first; `MISSED` when the reader is before `prevId` and must read what it missed.
 */
export function continuesAt(position: string | null, prevId: string, events: readonly StoredEvent[]): number {
  if (position === null) return prevId === "" ? 0 : MISSED;
  if (position === prevId) return 0;
  if (prevId !== "" && comparePositions(position, prevId) < 0) return MISSED;
  let k = 0;
  while (k < events.length && comparePositions(events[k]!.id, position) <= 0) k++;
  return k;
}
