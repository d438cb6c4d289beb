/**
 * The per-instance fan-out. One notice per appended batch arrives on the instance's single pub/sub
 * link and is handed, already parsed and encoded once, to every local reader of that session whose
 * position matches the notice's previous position. Readers that are behind (new, resumed, slow, or
 * after a missed notice) are caught up from the store by their connection, one batch at a time.
 */
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { comparePositions, parsePosition } from "../store/positions.js";
import type { AppendNotice, StreamStore } from "../store/types.js";
import type { Reader } from "./reader.js";

export interface HubOptions {
  catchUpBatch: number;
}

export class Hub {
  private readonly readers = new Map<string, Set<Reader>>();

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
    let set = this.readers.get(reader.sessionId);
    if (!set) {
      set = new Set();
      this.readers.set(reader.sessionId, set);
    }
    set.add(reader);
    reader.state = "behind";
    // Watch before the first read: an append between the read and the watch would otherwise be missed.
    try {
      await this.store.notifier.watch(reader.sessionId);
    } catch (error) {
      this.leave(reader);
      throw error;
    }
    reader.requestCatchUp();
  }

  leave(reader: Reader): void {
    const set = this.readers.get(reader.sessionId);
    if (!set?.delete(reader)) return;
    if (set.size === 0) {
      this.readers.delete(reader.sessionId);
      this.store.notifier.unwatch(reader.sessionId);
    }
  }

  /** Sessions with at least one local reader. */
  get watchedSessions(): number {
    return this.readers.size;
  }

  /**
   * Reads one batch for a reader that is behind and delivers it. Returns true when more may remain;
   * false when the reader is now live.
   */
  async readBatch(reader: Reader): Promise<boolean> {
    // Every catch-up request marks the reader behind first; a live one here was queued before it caught
    // up (e.g. while its connection's reads were at their limit) and is fed by notices now. Reading it
    // anyway would race those notices and deliver their events twice.
    if (reader.state === "live") return false;
    reader.reading = true;
    reader.dirty = false;
    try {
      const checkGap = !reader.gapChecked;
      const from = reader.position;
      const result = await this.store.read(reader.sessionId, from, this.options.catchUpBatch);
      reader.gapChecked = true;
      const gap = checkGap ? result.gap : null;
      if (gap) this.metrics.gaps.inc({ reason: gap.oldest === null ? "expired" : "trimmed" });
      // Defensive: should anything have advanced the reader while the read was in flight, deliver only
      // what it has not had yet.
      const now = reader.position;
      const events =
        now === from || now === null
          ? result.events
          : result.events.filter((event) => comparePositions(event.id, now) > 0);
      if (events.length > 0 || gap) {
        this.metrics.replayedEvents.inc(events.length);
        reader.deliver(events, gap, true);
      }
      const more = result.events.length >= this.options.catchUpBatch || reader.dirty;
      if (!more) reader.state = "live";
      return more;
    } finally {
      reader.reading = false;
    }
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
      } else if (position !== null && notice.prevId !== "" && comparePositions(position, notice.prevId) > 0) {
        // Already has part of the batch (it was read from the store): deliver only the rest.
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
}
