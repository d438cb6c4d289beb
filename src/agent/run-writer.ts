/**
 * Appends one run's events: the first event pushed in a turn of the event loop goes at once, and the
 * rest of that turn's events follow as one batch (one round trip for a burst of deltas). Batches are
 * pipelined without waiting for the previous reply, and each carries the writer's sequence number so
 * a batch re-sent after a lost reply or an outage lands exactly once and in order. While the store is unreachable, events wait here, up to
 * `maxBufferedEvents`; past that the run is told to stop and only its terminal event is still queued.
 */
import type { AppendOutcome, EventInput, StreamStore } from "../store/types.js";

type Appended = Extract<AppendOutcome, { kind: "appended" }>;

export interface RunWriterOptions {
  /** Nothing is sent before this resolves; false (the session was not created) stops the writer. */
  ready?: Promise<boolean>;
  maxBufferedEvents: number;
  retryDelayMs: number;
  /** The buffer overflowed: the run must stop and end with `store_unavailable`. */
  onOverflow(): void;
  /** The session was ended by someone else (forced cancel, crash sweeper): the run must stop. */
  onEndedElsewhere(): void;
  /** A batch landed (not called for a re-sent batch found already applied). */
  onAppended?(events: readonly EventInput[], outcome: Appended): void;
}

interface Batch {
  seq: number;
  events: EventInput[];
}

export class RunWriter {
  private queued: EventInput[] = [];
  private unacknowledged: Batch[] = [];
  private nextSeq = 1;
  private flushScheduled = false;
  private resending = false;
  private stopped = false;
  private overflowed = false;
  private idleWaiters: Array<() => void> = [];
  private ready: boolean;

  constructor(
    private readonly store: StreamStore,
    private readonly sessionId: string,
    private readonly writerId: string,
    private readonly options: RunWriterOptions,
  ) {
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
    let count = this.queued.length;
    for (const batch of this.unacknowledged) count += batch.events.length;
    return count;
  }

  /** True once the session was ended elsewhere: nothing more will be written. */
  get isStopped(): boolean {
    return this.stopped;
  }

  push(event: EventInput): void {
    if (this.stopped || this.overflowed) return;
    if (this.bufferedEvents >= this.options.maxBufferedEvents) {
      this.overflowed = true;
      this.options.onOverflow();
      return;
    }
    this.enqueue(event);
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
    this.unacknowledged.push(batch);
    if (!this.resending) this.send(batch);
  }

  private send(batch: Batch): void {
    this.store
      .append(this.sessionId, batch.events, { writer: { writerId: this.writerId, seq: batch.seq } })
      .then(
        (outcome) => this.acknowledge(batch, outcome),
        () => this.resendLater(),
      );
  }

  private acknowledge(batch: Batch, outcome: AppendOutcome): void {
    switch (outcome.kind) {
      case "appended":
      case "duplicate":
        this.unacknowledged = this.unacknowledged.filter((pending) => pending !== batch);
        if (outcome.kind === "appended") this.options.onAppended?.(batch.events, outcome);
        break;
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
    this.options.onEndedElsewhere();
    this.notifyIfIdle();
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
