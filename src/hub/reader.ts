import type { ReadResult, StoredEvent } from "../store/types.js";

/**
 * One session as read by one connection. The hub feeds it live events while it is `live` and its
 * connection can take them; otherwise it is `behind`, and its owner catches it up from the store.
 */
export interface Reader {
  readonly sessionId: string;
  /** Position of the last event handed to this reader; null until it has one (start from the beginning). */
  position: string | null;
  state: "live" | "behind";
  /** A catch-up read is in flight, or its batch is held (prefetched) until the connection takes it. */
  reading: boolean;
  /** Set when a notice arrived during a read: one more read is needed before going live. */
  dirty: boolean;
  /** Whether the first read checked for trimmed history. */
  gapChecked: boolean;
  /** The connection accepts live events now. */
  canTakeLive(): boolean;
  /** Events strictly after `position`, in order, contiguous; `gap` precedes them when history was trimmed. */
  deliver(events: readonly StoredEvent[], gap: ReadResult["gap"], fromStore: boolean): void;
  /** Asks the owner to schedule a catch-up read (via `Hub.readBatch`). */
  requestCatchUp(): void;
  /** Asks the owner for room to hold one batch read ahead; false when its connection holds enough. */
  holdReadAhead(): boolean;
  /** The batch held for this reader was taken or dropped. */
  releaseReadAhead(): void;
}
