/**
 * One session read for a front door: from its first event (a door's translation is a fold over the
 * whole session, so even a resume replays it and drops what the client has), live once caught up,
 * until its terminal event. The reading is the multiplexed stream's own: a `SessionReader` that the
 * hub pushes batches to and a `CatchUp` that reads the store while it is behind; only what becomes of
 * the events differs (a `DoorSink`: the door's own frames, or the events collected for one answer).
 */
import type { Logger } from "pino";
import type { Hub } from "../hub/hub.js";
import type { Metrics } from "../metrics.js";
import { CatchUp, type CatchUpOptions, type CatchUpOwner } from "../mux/catch-up.js";
import { type ReaderOwner, SessionReader } from "../mux/session-reader.js";
import type { ReadResult, StoredEvent, StreamStore } from "../store/types.js";

export interface DoorSink {
  /** False while the client's socket is full: the reader falls behind and catches up from the store. */
  readonly writable: boolean;
  /** The session's next events, in order. Returns true once the door has all it needs (it then closes). */
  take(events: readonly StoredEvent[]): boolean;
  /** The session is gone (its id was created again by someone else): end here, without a terminal. */
  abandon?(): void;
}

export interface DoorStreamDeps {
  hub: Hub;
  store: StreamStore;
  metrics: Metrics;
  logger: Logger;
  sink: DoorSink;
}

/** How a door reads the store: one batch at a time, tokens never merged (each is a frame of its own). */
export function doorReadOptions(catchUpBatch: number): CatchUpOptions {
  return { catchUpBatch, maxConcurrentReads: 1, retryReadAfterMs: 500, mergeTokensWhenBehind: false };
}

export class DoorStream implements ReaderOwner, CatchUpOwner {
  private reader: SessionReader | null = null;
  private catchingUp: CatchUp | null = null;
  private closed = false;
  private readonly ended: Promise<void>;
  private resolveEnded: () => void = () => {};

  constructor(
    private readonly deps: DoorStreamDeps,
    private readonly options: CatchUpOptions,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  /** Resolves once the door took what it needed, or the stream was closed. */
  get done(): Promise<void> {
    return this.ended;
  }

  /**
   * Reads the session from its first event. `created`: this request is creating it (no events yet),
   * so the reader is live from the start and joins the hub before this returns its promise: the run's
   * first batch, handed over locally, reaches it. `incarnation`: the one the client was authorised for
   * (null: any; policy.ts readIncarnation); a batch of another ends the door with none of it.
   */
  async read(sessionId: string, created: boolean, incarnation: number | null = null): Promise<void> {
    if (this.closed || this.reader) return;
    const { hub } = this.deps;
    const reader = new SessionReader(hub.sessionKey(sessionId), 0, null, this, null, created, incarnation);
    this.reader = reader;
    // Read only once notices are flowing: an append between the read and the watch would be missed.
    await hub.join(reader);
    if (this.closed) hub.leave(reader);
    else if (!created) this.catchUp(reader);
  }

  onDrain(): void {
    this.catchingUp?.pump();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reader) {
      this.reader.close();
      this.deps.hub.leave(this.reader);
    }
    this.catchingUp?.close();
    this.catchingUp = null;
    this.resolveEnded();
  }

  // ReaderOwner and CatchUpOwner.

  canTakeLive(): boolean {
    return this.deps.sink.writable;
  }

  deliverLive(reader: SessionReader, events: readonly StoredEvent[]): void {
    this.deliver(reader, events);
  }

  /** The session read expired and its id was created again: the door ends here, with none of it. */
  incarnationEnded(_reader: SessionReader): void {
    if (this.closed) return;
    this.deps.sink.abandon?.();
    this.close();
  }

  catchUp(reader: SessionReader): void {
    if (this.closed || (reader.state !== "behind" && reader.state !== "resuming")) return;
    this.catchingUp ??= new CatchUp(this, { ...this.deps, writer: this.deps.sink }, this.options);
    this.catchingUp.add(reader);
  }

  readMayMiss(reader: SessionReader): void {
    this.catchingUp?.readMayMiss(reader);
  }

  catchUpIdle(catchUp: CatchUp): void {
    if (this.catchingUp === catchUp) this.catchingUp = null;
  }

  deliverCaughtUp(reader: SessionReader, events: readonly StoredEvent[], _gap: ReadResult["gap"]): void {
    // A session's own history is compacted, never cut (its `snapshot` comes first); a gap is only the
    // lifecycle feed's, which no door reads.
    this.deliver(reader, events);
  }

  private deliver(reader: SessionReader, events: readonly StoredEvent[]): void {
    if (this.closed || reader.state === "closed" || events.length === 0) return;
    reader.position = events[events.length - 1]!.id;
    this.deps.metrics.addDelivered(events.length);
    if (this.deps.sink.take(events)) this.close();
  }
}
