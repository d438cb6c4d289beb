/**
 * Catching one connection's readers up from the store. The catch-up owns what that takes: the queue
 * (round-robin, one batch per turn, so one busy session cannot starve the others), the concurrency (at
 * most `maxConcurrentReads` batches in turn), the read-ahead (a reader's next batch is read while the
 * current one is written; at most `maxConcurrentReads` held per connection, so a connection far behind
 * on hundreds of sessions holds a few batches, not one per session), and what a read says besides its
 * events: a `gap` on the first read from a resume point, and whether a batch came while it was pending.
 * A compacted session's `snapshot` is an ordinary first event (with an id) to it.
 *
 * It is created when a reader of its connection falls behind and dropped once nothing is queued, read
 * or held: most connections are live, and idle, for most of their life.
 */
import type { Logger } from "pino";
import { loggedError } from "../errors.js";
import type { Metrics } from "../metrics.js";
import { comparePositions } from "../store/positions.js";
import type { ReadResult, StoredEvent, StreamStore } from "../store/types.js";
import type { SessionReader } from "./session-reader.js";
import { mergeTokenRuns } from "./tokens.js";

export interface CatchUpOptions {
  /** Events per store read. */
  catchUpBatch: number;
  /** Batches in turn (read, then delivered) at once for a connection; as many may be held read ahead. */
  maxConcurrentReads: number;
  retryReadAfterMs: number;
  /** Fold runs of tokens in a full batch (a client that is far behind) into fewer frames. */
  mergeTokensWhenBehind: boolean;
}

export interface CatchUpDeps {
  store: StreamStore;
  /** Turns start only while the socket takes writes; the owner calls `pump` when it drains. */
  writer: { readonly writable: boolean };
  metrics: Metrics;
  logger: Logger;
}

export interface CatchUpOwner {
  /** Writes a batch read from the store: events strictly after the reader's position, in order. */
  deliverCaughtUp(reader: SessionReader, events: readonly StoredEvent[], gap: ReadResult["gap"]): void;
  /** Puts a reader back in line later (through the owner: this catch-up may be gone by then). */
  catchUp(reader: SessionReader): void;
  /** Nothing is queued, read or held any more: the owner may let this catch-up go. */
  catchUpIdle(catchUp: CatchUp): void;
  /** The read found another incarnation of the reader's id: none of it is delivered (see ReaderOwner). */
  incarnationEnded(reader: SessionReader): void;
}

/** One store read of one reader's next batch. A reader in `reading` has exactly one. */
interface PendingRead {
  readonly reader: SessionReader;
  /** The position the read starts after. */
  readonly from: string | null;
  /** The first read from the client's resume point: it reports trimmed history. */
  readonly checkGap: boolean;
  /** A batch was appended after the read was sent: the read may not include it, so another follows. */
  stale: boolean;
  /** Its reader's turn has come (its batch is awaited, then delivered); false while held, read ahead. */
  inTurn: boolean;
  readonly result: Promise<ReadResult>;
}

const ignore = (): void => {};

/**
 * Readers whose last read failed in an outage (logged once). Kept here, not in a catch-up: a reader
 * waiting to retry is in none (its connection's catch-up is dropped once idle).
 */
const failingInOutage = new WeakSet<SessionReader>();

export class CatchUp {
  /** Readers owed a turn: `behind`/`resuming` ones, and `reading` ones whose next batch is held. */
  private queue: SessionReader[] = [];
  /** At most one per reader: `inTurn` of them in turn, `held` of them read ahead. */
  private readonly reads: PendingRead[] = [];
  private inTurn = 0;
  private held = 0;
  private closed = false;

  constructor(
    private readonly owner: CatchUpOwner,
    private readonly deps: CatchUpDeps,
    private readonly options: CatchUpOptions,
  ) {}

  /** Puts a reader that is `behind` or `resuming` in line. */
  add(reader: SessionReader): void {
    if (this.closed) return;
    this.queue.push(reader);
    this.pump();
  }

  /** A batch was appended to a `reading` reader's session: its pending read may not include it. */
  readMayMiss(reader: SessionReader): void {
    const read = this.pendingOf(reader);
    if (read) read.stale = true;
  }

  /** The reader was closed: its held read is dropped (one in turn delivers nothing to a closed reader). */
  forget(reader: SessionReader): void {
    const read = this.pendingOf(reader);
    if (read && !read.inTurn) this.remove(read);
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.reads.length = 0;
  }

  /** Starts turns while the socket takes writes, the queue has readers, and the concurrency allows. */
  pump(): void {
    while (
      !this.closed &&
      this.deps.writer.writable &&
      this.inTurn < this.options.maxConcurrentReads &&
      this.queue.length > 0
    ) {
      const reader = this.queue.shift()!;
      let read: PendingRead | undefined;
      if (reader.state === "reading") {
        // Its next batch was read ahead. None held: it is in turn already (a second entry), so skip it.
        read = this.heldOf(reader);
        if (read === undefined) continue;
        read.inTurn = true;
        this.held--;
        this.inTurn++;
      } else if (reader.state === "behind" || reader.state === "resuming") {
        const checkGap = reader.startRead();
        read = this.send(reader, reader.position, checkGap, true);
      } else {
        continue; // live, or closed while it waited
      }
      this.whenRead(read);
    }
    if (!this.closed && this.queue.length === 0 && this.reads.length === 0) this.owner.catchUpIdle(this);
  }

  private whenRead(read: PendingRead): void {
    read.result.then(
      (result) => this.done(read, result),
      (error: unknown) => this.failed(read, error),
    );
  }

  private done(read: PendingRead, result: ReadResult): void {
    const reader = read.reader;
    // Its reader closed (its connection too, perhaps) while the read was in flight: deliver nothing.
    if (!this.remove(read) || reader.state !== "reading") {
      this.pump();
      return;
    }
    if (reader.incarnation !== null && result.createdAt !== reader.incarnation && result.events.length > 0) {
      // The id's session expired and was created again (or is gone mid-read): not this reader's.
      this.owner.incarnationEnded(reader);
      this.pump();
      return;
    }
    failingInOutage.delete(reader);
    const { metrics } = this.deps;
    const { catchUpBatch, maxConcurrentReads } = this.options;
    const gap = read.checkGap ? result.gap : null;
    if (gap) metrics.gaps.inc({ reason: gap.oldest === null ? "expired" : "trimmed" });
    // A full batch may have more after it (with a snapshot on top, one short reads once more: harmless).
    const more = result.events.length >= catchUpBatch || read.stale;
    // Read the next batch now, from where this one ends, so the store's latency overlaps the writing
    // of this one. Should the reader close while it is written (its session ends), it is dropped.
    const ahead = more && this.held < maxConcurrentReads;
    if (ahead) this.send(reader, result.events.at(-1)?.id ?? read.from, false, false);
    // Nothing moves a reader while its read is pending (pushes pass it by); should anything have,
    // deliver only what it lacks.
    const now = reader.position;
    let events = result.events;
    if (now !== read.from && now !== null)
      events = events.filter((event) => comparePositions(event.id, now) > 0);
    if (events.length > 0 || gap) {
      metrics.replayedEvents.inc(events.length);
      if (this.options.mergeTokensWhenBehind && events.length >= catchUpBatch) {
        const folded = mergeTokenRuns(events);
        events = folded.events;
        if (folded.merged > 0) metrics.mergedTokens.inc(folded.merged);
      }
      this.owner.deliverCaughtUp(reader, events, gap);
    }
    if (!more) {
      reader.caughtUp();
    } else if (!this.closed && reader.state === "reading") {
      // Round-robin: a session with more to read goes to the back of the queue.
      if (!ahead) reader.owesMore();
      this.queue.push(reader);
    }
    this.pump();
  }

  private failed(read: PendingRead, error: unknown): void {
    const reader = read.reader;
    if (this.remove(read) && reader.state === "reading") {
      reader.readFailed(read.checkGap);
      this.logFailure(reader, error);
      const owner = this.owner;
      setTimeout(() => owner.catchUp(reader), this.options.retryReadAfterMs).unref();
    }
    this.pump();
  }

  /**
   * A fault is logged with its stack at every retry. An outage (the store unreachable or silent) is
   * logged once, without a stack, when the reader's reads start failing; its retries until a read
   * succeeds only at debug, or every reader would log once per retry for as long as the outage lasts.
   */
  private logFailure(reader: SessionReader, error: unknown): void {
    const { logger, store } = this.deps;
    const err = loggedError(error, () => store.isReady());
    if (err === error) {
      logger.warn({ err, sessionId: reader.sessionId }, "catch-up read failed; retrying");
    } else if (failingInOutage.has(reader)) {
      logger.debug({ err, sessionId: reader.sessionId }, "catch-up read failed again; retrying");
    } else {
      failingInOutage.add(reader);
      logger.warn({ err, sessionId: reader.sessionId }, "catch-up read failed; retrying");
    }
  }

  /** Sends a store read of the reader's next batch, in turn or held (read ahead). */
  private send(reader: SessionReader, from: string | null, checkGap: boolean, inTurn: boolean): PendingRead {
    const result = this.deps.store.read(reader.sessionId, from, this.options.catchUpBatch);
    // A held read may fail before its turn; the failure surfaces when its turn awaits it.
    if (!inTurn) result.catch(ignore);
    const read: PendingRead = { reader, from, checkGap, stale: false, inTurn, result };
    this.reads.push(read);
    if (inTurn) this.inTurn++;
    else this.held++;
    return read;
  }

  /** Takes a read off the books; false when it was not on them (dropped, or the catch-up closed). */
  private remove(read: PendingRead): boolean {
    const at = this.reads.indexOf(read);
    if (at < 0) return false;
    this.reads.splice(at, 1);
    if (read.inTurn) this.inTurn--;
    else this.held--;
    return true;
  }

  private pendingOf(reader: SessionReader): PendingRead | undefined {
    for (const read of this.reads) if (read.reader === reader) return read;
    return undefined;
  }

  private heldOf(reader: SessionReader): PendingRead | undefined {
    for (const read of this.reads) if (read.reader === reader && !read.inTurn) return read;
    return undefined;
  }
}
