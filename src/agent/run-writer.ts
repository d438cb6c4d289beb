/**
 * Appends one run's events: the first event pushed in a turn of the event loop goes at once, and the
 * rest of that turn's events follow as one batch (one round trip for a burst of deltas). Batches are
 * pipelined without waiting for the previous reply, and each carries the writer's sequence number so
 * a batch re-sent after a lost reply or an outage lands exactly once and in order.
 *
 * At most `maxBufferedEvents` events wait here (queued or unacknowledged). A buffer that fills is
 * backpressure: `push` returns a promise, and the run reads its model on once it resolves (room again).
 * The store going away does not end that wait at once: a full buffer waits out an outage (a restart, a
 * dropped connection, a failover) as a buffer with room does. Only a store that has taken none of the
 * run's events for `maxStoreWaitMs` while the buffer is full overflows it: the run is told to stop and
 * only its terminal event is still queued.
 */
import type { AppendOutcome, EventInput, StreamStore } from "../store/types.js";

type Appended = Extract<AppendOutcome, { kind: "appended" }>;

export interface RunWriterOptions {
  /** Nothing is sent before this resolves; false (the session was not created) stops the writer. */
  ready?: Promise<boolean>;
  /** Full: the run waits for room (see `maxStoreWaitMs`). */
  maxBufferedEvents: number;
  /** Between re-sends after a failed append; also how often a run waiting for room checks the store. */
  retryDelayMs: number;
  /**
   * How long a full buffer waits for a store that takes none of the run's events (unreachable, its
   * appends failing, or held), counted from its last acknowledgement (or from the first send after the
   * writer had nothing in flight). Past it the buffer overflows.
   */
  maxStoreWaitMs: number;
  /** Milliseconds; default Date.now. */
  clock?: () => number;
  /** The buffer overflowed (full, the store gone for `maxStoreWaitMs`): the run must stop and end with `store_unavailable`. */
  onOverflow(): void;
  /**
   * The buffer is full and the store unavailable (not ready, or its appends failing): the run waits for
   * it, until `deadline` (the clock's time) at the latest. Once per wait.
   */
  onStoreWait?(deadline: number): void;
  /** The session was ended by someone else (forced cancel, crash sweeper): the run must stop. */
  onEndedElsewhere(): void;
  /** A batch landed (not called for a re-sent batch found already applied). */
  onAppended?(events: readonly EventInput[], outcome: Appended): void;
}

interface Batch {
  seq: number;
  events: EventInput[];
}

/** The one promise every push gets while the buffer is full, and what ends it. */
interface RoomWaiter {
  promise: Promise<void>;
  resolve(): void;
  /** Checks the store while the run waits: the wait must not outlast `maxStoreWaitMs` of an outage. */
  watchdog: NodeJS.Timeout;
  /** `onStoreWait` was called for this wait. */
  reported: boolean;
}

export class RunWriter {
  private queued: EventInput[] = [];
  private unacknowledged: Batch[] = [];
  /** Events in `queued` and `unacknowledged`: counted, not summed, as push reads it per event. */
  private buffered = 0;
  private roomWaiter: RoomWaiter | null = null;
  private nextSeq = 1;
  private flushScheduled = false;
  private resending = false;
  /** The last append failed (none has succeeded since). */
  private failing = false;
  private stopped = false;
  private overflowed = false;
  private idleWaiters: Array<() => void> = [];
  private ready: boolean;
  private readonly clock: () => number;
  /** When the store last acknowledged a batch, or was handed one with nothing of ours in flight. */
  private lastProgressAt: number;
  private waits = 0;

  constructor(
    private readonly store: StreamStore,
    private readonly sessionId: string,
    private readonly writerId: string,
    private readonly options: RunWriterOptions,
  ) {
    this.clock = options.clock ?? Date.now;
    this.lastProgressAt = this.clock();
    this.ready = options.ready === undefined;
    options.ready?.then(
      (created) => {
        if (!created) {
          this.stop();
          return;
        }
        this.ready = true;
        this.flush();
      },
      () => this.stop(),
    );
  }

  get bufferedEvents(): number {
    return this.buffered;
  }

  /** How many times the buffer filled and the run waited for room (backpressure, or an outage). */
  get fullBufferWaits(): number {
    return this.waits;
  }

  /** True once the session was ended elsewhere: nothing more will be written. */
  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Queues an event. Returns undefined while there is room (no promise per event); once the buffer is
   * full, a promise the caller must await before pushing again: it resolves when there is room, or
   * when the run must stop (overflow, or the session ended elsewhere). A push into a full buffer (the
   * caller did not wait) overflows it.
   */
  push(event: EventInput): Promise<void> | undefined {
    if (this.stopped || this.overflowed) return undefined;
    if (this.buffered >= this.options.maxBufferedEvents) {
      this.overflow();
      return undefined;
    }
    this.enqueue(event);
    return this.buffered >= this.options.maxBufferedEvents ? this.waitForRoom() : undefined;
  }

  /** Queues the terminal event (past any bound) and resolves when everything is written. */
  async finish(terminal: EventInput): Promise<void> {
    if (!this.stopped) this.enqueue(terminal);
    await this.idle();
  }

  /** Resolves once everything pushed so far is written, or after `timeoutMs` (the store may be down). */
  async written(timeoutMs: number): Promise<void> {
    if (this.isIdle()) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([this.idle(), timeout]);
    clearTimeout(timer);
  }

  private enqueue(event: EventInput): void {
    this.queued.push(event);
    this.buffered++;
    // The first event of a turn goes at once (a run's first token must not wait for the rest of its
    // burst to be parsed); the rest of the turn's events follow as one batch.
    if (this.ready && this.queued.length === 1 && !this.flushScheduled && !this.resending) this.flush();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (!this.ready) return;
    if (this.queued.length === 0 || this.stopped) {
      this.notifyIfIdle();
      return;
    }
    const batch: Batch = { seq: this.nextSeq++, events: this.queued };
    this.queued = [];
    // The store owed us nothing until now: it is not late with this batch yet.
    if (this.unacknowledged.length === 0) this.lastProgressAt = this.clock();
    this.unacknowledged.push(batch);
    if (!this.resending) this.send(batch);
  }

  private send(batch: Batch): void {
    this.store
      .append(this.sessionId, batch.events, { writer: { writerId: this.writerId, seq: batch.seq } })
      .then(
        (outcome) => this.acknowledge(batch, outcome),
        () => {
          this.appendFailed();
          this.resendLater();
        },
      );
  }

  private acknowledge(batch: Batch, outcome: AppendOutcome): void {
    switch (outcome.kind) {
      case "appended":
      case "duplicate": {
        this.failing = false;
        this.lastProgressAt = this.clock();
        // A batch re-sent while its first send was still in flight is acknowledged twice: count it once.
        const index = this.unacknowledged.indexOf(batch);
        if (index >= 0) {
          this.unacknowledged.splice(index, 1);
          this.buffered -= batch.events.length;
          if (this.buffered < this.options.maxBufferedEvents) this.endWaitForRoom();
        }
        if (outcome.kind === "appended") this.options.onAppended?.(batch.events, outcome);
        break;
      }
      case "out_of_order":
        this.resendLater();
        return;
      case "ended":
      case "missing":
      case "leased":
        this.stop();
        return;
    }
    this.notifyIfIdle();
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.queued = [];
    this.unacknowledged = [];
    this.buffered = 0;
    this.endWaitForRoom();
    this.options.onEndedElsewhere();
    this.notifyIfIdle();
  }

  private overflow(): void {
    this.overflowed = true;
    this.endWaitForRoom();
    this.options.onOverflow();
  }

  private appendFailed(): void {
    this.failing = true;
    // A run waiting for room hears of it at the watchdog's next check (and overflows only past the bound).
  }

  /**
   * The full buffer's one promise. It resolves when an acknowledgement makes room, or when the store
   * has taken nothing for `maxStoreWaitMs` (overflow): a store that is unavailable for less than that,
   * however full the buffer, loses the run nothing.
   */
  private waitForRoom(): Promise<void> {
    if (this.roomWaiter === null) {
      this.waits++;
      let resolve: () => void = () => {};
      const promise = new Promise<void>((settle) => {
        resolve = settle;
      });
      const watchdog = setInterval(() => this.checkStore(), this.options.retryDelayMs);
      this.roomWaiter = { promise, resolve, watchdog, reported: false };
      // A store already gone for the whole bound (the buffer filled slowly) overflows it now.
      this.checkStore();
      return promise;
    }
    return this.roomWaiter.promise;
  }

  /** The watchdog of a run waiting for room: past the bound, the buffer overflows. */
  private checkStore(): void {
    const waiter = this.roomWaiter;
    if (waiter === null) return;
    const deadline = this.lastProgressAt + this.options.maxStoreWaitMs;
    if (this.clock() >= deadline) {
      this.overflow();
      return;
    }
    if (!waiter.reported && (this.failing || !this.store.isReady())) {
      waiter.reported = true;
      this.options.onStoreWait?.(deadline);
    }
  }

  private endWaitForRoom(): void {
    const waiter = this.roomWaiter;
    if (waiter === null) return;
    this.roomWaiter = null;
    clearInterval(waiter.watchdog);
    waiter.resolve();
  }

  /** Re-sends every unacknowledged batch in order, once the store answers again. */
  private resendLater(): void {
    if (this.resending || this.stopped) return;
    this.resending = true;
    const retry = () => {
      if (this.stopped) return;
      if (!this.store.isReady()) {
        setTimeout(retry, this.options.retryDelayMs);
        return;
      }
      this.resendInOrder().finally(() => {
        this.resending = false;
        if (this.queued.length > 0) this.flush();
        else this.notifyIfIdle();
      });
    };
    setTimeout(retry, this.options.retryDelayMs);
  }

  private async resendInOrder(): Promise<void> {
    while (this.unacknowledged.length > 0 && !this.stopped) {
      const batch = this.unacknowledged[0]!;
      let outcome: AppendOutcome;
      try {
        outcome = await this.store.append(this.sessionId, batch.events, {
          writer: { writerId: this.writerId, seq: batch.seq },
        });
      } catch {
        this.appendFailed();
        await new Promise((resolve) => setTimeout(resolve, this.options.retryDelayMs));
        continue;
      }
      if (outcome.kind === "out_of_order") {
        // Cannot happen while batches are re-sent one by one from the oldest; stop rather than spin.
        this.stop();
        return;
      }
      this.acknowledge(batch, outcome);
    }
  }

  private idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.stopped || (this.queued.length === 0 && this.unacknowledged.length === 0 && !this.resending);
  }

  private notifyIfIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
