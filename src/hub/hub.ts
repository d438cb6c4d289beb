/**
 * The per-instance fan-out. One notice per appended batch arrives on the instance's single pub/sub
 * link, already parsed, and is pushed to every local reader of its session; a batch this instance
 * appended is pushed at once too (`deliverLocal`). That is all the hub does: it keeps session → readers
 * and never touches a reader's state. Each reader's connection decides what a push means (deliver it
 * live, or catch up from the store) and does its own store reads (src/mux/catch-up.ts).
 */
import type { Logger } from "pino";
import { detached } from "../detached.js";
import type { Metrics } from "../metrics.js";
import { parsePosition } from "../store/positions.js";
import type { AppendNotifier, EventInput, StoredEvent } from "../store/types.js";
import type { Reader } from "./reader.js";

export class Hub {
  private readonly readers = new Map<string, Set<Reader>>();

  constructor(
    private readonly notifier: AppendNotifier,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    notifier.setListener({
      onAppend: (notice) => this.fanOut(notice.sessionId, notice.prevId, notice.events, notice.createdAt),
      onResync: () => this.resyncAll(),
    });
  }

  /**
   * Adds a reader: it is pushed every batch from now on (synchronously: a run's first batch, handed over
   * locally, reaches a reader joined in the same turn). Resolves once notices from other instances are
   * flowing too; a reader should read the store only then, or an append in between would be missed.
   */
  async join(reader: Reader): Promise<void> {
    let set = this.readers.get(reader.sessionId);
    if (!set) {
      set = new Set();
      this.readers.set(reader.sessionId, set);
    }
    set.add(reader);
    try {
      await this.notifier.watch(reader.sessionId);
    } catch (error) {
      this.leave(reader);
      throw error;
    }
  }

  /**
   * Subscribes to a new session's notices before its first reader joins: a run's stream does so while
   * the session is created, so its reader's join then waits for no round trip. The returned call (once)
   * drops the subscription unless a reader holds it by then.
   */
  prewatch(sessionId: string): () => void {
    this.notifier.watch(sessionId).catch(() => {
      // Refused: the reader's own join asks again, and reports it.
    });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (!this.readers.has(sessionId)) this.notifier.unwatch(sessionId);
    };
  }

  leave(reader: Reader): void {
    const set = this.readers.get(reader.sessionId);
    if (!set?.delete(reader)) return;
    if (set.size === 0) {
      this.readers.delete(reader.sessionId);
      this.notifier.unwatch(reader.sessionId);
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
   * A batch this instance appended, handed over when the store acknowledged it, before its notice
   * comes back over pub/sub. Readers take it by the same position rule as a notice, so whichever of
   * the two arrives second delivers nothing. `createdAt`: the session's incarnation, as the append
   * reported it (null: unknown, and readers bound to an incarnation read the store instead).
   */
  deliverLocal(
    sessionId: string,
    prevId: string,
    events: () => StoredEvent[],
    createdAt: number | null = null,
  ): void {
    // Most runs are read elsewhere (or not yet): encode the batch only for local readers.
    if (!this.readers.has(sessionId)) return;
    this.fanOut(sessionId, prevId, events(), createdAt);
  }

  /**
   * A batch this instance appended (a run's or a producer's), as the store acknowledged it: its events
   * are encoded as the notice carries them (JSON text of `data`), only if this instance has readers.
   */
  deliverAppended(
    sessionId: string,
    events: readonly EventInput[],
    appended: { ids: readonly string[]; prevId: string; createdAt: number },
  ): void {
    if (appended.ids.length !== events.length) return;
    this.deliverLocal(
      sessionId,
      appended.prevId,
      () =>
        events.map((event, i) => ({
          id: appended.ids[i]!,
          type: event.type,
          data: JSON.stringify(event.data),
        })),
      appended.createdAt,
    );
  }

  private fanOut(sessionId: string, prevId: string, events: StoredEvent[], createdAt: number | null): void {
    const set = this.readers.get(sessionId);
    if (!set) return;
    let tookLive = false;
    // A reader may leave during its push (the batch ended its session): a Set allows that mid-iteration.
    for (const reader of set) if (reader.push(prevId, events, createdAt)) tookLive = true;
    if (tookLive) {
      const appendedAtMs = parsePosition(events[0]!.id)?.ms;
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
    for (const set of this.readers.values()) for (const reader of set) reader.resync();
  }
}
