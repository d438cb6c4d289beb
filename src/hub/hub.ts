/**
 * The per-instance fan-out. One notice per appended batch arrives on the instance's single pub/sub
 * link and is handed, already parsed and encoded once, to every local reader of that session whose
 * position matches the notice's previous position. Readers that are behind (new, resumed, slow, or
 * after a missed notice) are caught up from the store by their connection, one batch at a time.
 */
import type { Logger } from "pino";
import { detached } from "../detached.js";
import type { Metrics } from "../metrics.js";
import { comparePositions, parsePosition } from "../store/positions.js";
import type { AppendNotice, ReadResult, StoredEvent, StreamStore } from "../store/types.js";
import type { Reader } from "./reader.js";

interface PendingRead {
  /** The position the read starts after. */
  from: string | null;
  checkGap: boolean;
  result: Promise<ReadResult>;
}

const ignore = (): void => {};

export interface HubOptions {
  catchUpBatch: number;
}

export class Hub {
  private readonly readers = new Map<string, Set<Reader>>();
  /** At most one batch per reader catching up, read ahead of its delivery (and as many per connection as it allows). */
  private readonly prefetched = new Map<Reader, PendingRead>();

  constructor(
    private readonly store: StreamStore,
    private readonly options: HubOptions,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    store.notifier.setListener({
      onAppend: (notice) => this.onAppend(notice),
      onResync: () => this.resyncAll(),
    });
  }

  /** Registers a reader (state `behind`); resolves once live notices for its session are flowing. */
  async join(reader: Reader): Promise<void> {
    // Watch before the first read: an append between the read and the watch would otherwise be missed.
    await this.add(reader, "behind");
    reader.requestCatchUp();
  }

  /**
   * Registers the reader of a session created by this request, which has no events yet: it is live at
   * once, so the run's first events (handed over locally) reach it without waiting for the watch and a
   * first read. Should another instance append before the watch is in place, the next notice's
   * previous position will not match the reader's, and the reader catches up from the store.
   */
  async joinNew(reader: Reader): Promise<void> {
    await this.add(reader, "live");
  }

  private async add(reader: Reader, state: Reader["state"]): Promise<void> {
    let set = this.readers.get(reader.sessionId);
    if (!set) {
      set = new Set();
      this.readers.set(reader.sessionId, set);
    }
    set.add(reader);
    reader.state = state;
    try {
      await this.store.notifier.watch(reader.sessionId);
    } catch (error) {
      this.leave(reader);
      throw error;
    }
  }

  leave(reader: Reader): void {
    this.takeHeld(reader);
    const set = this.readers.get(reader.sessionId);
    if (!set?.delete(reader)) return;
    if (set.size === 0) {
      this.readers.delete(reader.sessionId);
      this.store.notifier.unwatch(reader.sessionId);
    }
  }

  /**
   * The hub's one copy of a session id, for a new reader. An id parsed from a request is usually a
   * slice of the request's query text, which a reader (living as long as its connection) would keep.
   */
  sessionKey(sessionId: string): string {
    const set = this.readers.get(sessionId);
    if (set) for (const reader of set) return reader.sessionId;
    return detached(sessionId);
  }

  /** Sessions with at least one local reader. */
  get watchedSessions(): number {
    return this.readers.size;
  }

  /**
   * Delivers one batch to a reader that is behind. Returns true when more may remain; false when the
   * reader is now live. When more remains, the next batch is read at once and held (at most one per
   * reader), so the store's latency overlaps the delivery and the writing of this one.
   */
  async readBatch(reader: Reader): Promise<boolean> {
    // Every catch-up request marks the reader behind first; a live one here was queued before it caught
    // up (e.g. while its connection's reads were at their limit) and is fed by notices now. Reading it
    // anyway would race those notices and deliver their events twice.
    if (reader.state === "live") return false;
    let read = this.takeHeld(reader);
    // A held batch is used only if it starts where the reader is (always, unless something moved it).
    if (read === undefined || read.from !== reader.position) read = this.startRead(reader, reader.position);
    try {
      const result = await read.result;
      reader.gapChecked = true;
      const gap = read.checkGap ? result.gap : null;
      if (gap) this.metrics.gaps.inc({ reason: gap.oldest === null ? "expired" : "trimmed" });
      const more = result.events.length >= this.options.catchUpBatch || reader.dirty;
      // The next read starts where this batch ends, before it is delivered (delivering moves the reader
      // there; should the session end in it or the connection close, the reader leaves, which drops it).
      if (more && this.readers.get(reader.sessionId)?.has(reader) && reader.holdReadAhead()) {
        this.prefetched.set(reader, this.startRead(reader, result.events.at(-1)?.id ?? reader.position));
      }
      // Defensive: should anything have advanced the reader while the read was in flight, deliver only
      // what it has not had yet.
      const now = reader.position;
      const events =
        now === read.from || now === null
          ? result.events
          : result.events.filter((event) => comparePositions(event.id, now) > 0);
      if (events.length > 0 || gap) {
        this.metrics.replayedEvents.inc(events.length);
        reader.deliver(events, gap, true);
      }
      if (!more) reader.state = "live";
      return more;
    } finally {
      reader.reading = this.prefetched.has(reader);
    }
  }

  /** The batch held for a reader, if any, no longer held. */
  private takeHeld(reader: Reader): PendingRead | undefined {
    const held = this.prefetched.get(reader);
    if (held === undefined) return undefined;
    this.prefetched.delete(reader);
    reader.releaseReadAhead();
    return held;
  }

  /**
   * Starts a store read. From here until its batch is delivered the reader is `reading`: a notice
   * arriving meanwhile marks it dirty, as the read may not include that append.
   */
  private startRead(reader: Reader, from: string | null): PendingRead {
    reader.reading = true;
    reader.dirty = false;
    const result = this.store.read(reader.sessionId, from, this.options.catchUpBatch);
    // A held read may fail before anyone awaits it; the failure surfaces when it is awaited.
    result.catch(ignore);
    return { from, checkGap: !reader.gapChecked, result };
  }

  private onAppend(notice: AppendNotice): void {
    const set = this.readers.get(notice.sessionId);
    if (!set) return;
    const last = notice.events[notice.events.length - 1]!;
    let handedOff = false;
    for (const reader of set) {
      if (reader.state === "behind") {
        if (reader.reading) reader.dirty = true;
        continue;
      }
      if (!reader.canTakeLive()) {
        reader.state = "behind";
        continue;
      }
      const position = reader.position;
      if (position === null ? notice.prevId === "" : position === notice.prevId) {
        reader.deliver(notice.events, null, false);
        handedOff = true;
      } else if (
        position !== null &&
        (notice.prevId === "" || comparePositions(position, notice.prevId) > 0)
      ) {
        // Already has part of the batch (read from the store, or handed over locally): deliver only the rest.
        if (comparePositions(position, last.id) < 0) {
          reader.deliver(
            notice.events.filter((event) => comparePositions(event.id, position) > 0),
            null,
            false,
          );
        }
      } else {
        reader.state = "behind";
        reader.requestCatchUp();
      }
    }
    if (handedOff) {
      const appendedAtMs = parsePosition(notice.events[0]!.id)?.ms;
      if (appendedAtMs !== undefined) {
        this.metrics.deliveryLatency.observe(Math.max(0, Date.now() - appendedAtMs) / 1000);
      }
    }
  }

  private resyncAll(): void {
    this.logger.warn(
      { sessions: this.readers.size },
      "notification link reconnected: re-reading from the store",
    );
    for (const set of this.readers.values()) {
      for (const reader of set) {
        reader.state = "behind";
        if (reader.reading) reader.dirty = true;
        reader.requestCatchUp();
      }
    }
  }

  /**
   * A batch this instance appended, handed over when the store acknowledged it, before its notice
   * comes back over pub/sub. Readers take it by the same position rule as a notice, so whichever of
   * the two arrives second delivers nothing.
   */
  deliverLocal(sessionId: string, prevId: string, events: () => StoredEvent[]): void {
    // Most runs are read elsewhere (or not yet): encode the batch only for local readers.
    if (!this.readers.has(sessionId)) return;
    this.onAppend({ sessionId, prevId, events: events() });
  }
}
