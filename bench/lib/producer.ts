/**
 * The producer: appends token events at a target total rate, spread evenly over the streaming
 * sessions. Each tick adds the events that came due to each session's pending count; a session with
 * pending events and no request in flight sends them all in one request (up to the publisher's batch
 * size). Each event carries the time it came due. One request in flight per session keeps each session's order.
 *
 * With `phases` > 1 the sessions are split into that many groups, served in turn on sub-ticks of
 * tickMs / phases: every session still sends once per tick, but independent sessions are not all in
 * step (agent runs start at unrelated moments), so the server sees a steady flow instead of one burst
 * of every session's events per tick.
 */
import type { Publisher } from "../targets/types.js";

export interface ProducerWindow {
  /** Events whose request was issued in the window. */
  sent: number;
  requests: number;
  errors: number;
  firstError: string | null;
  /** Events due but not yet sent at the end of the window (the producer or the server is behind). */
  backlog: number;
  seconds: number;
}

/** Events of one session that came due at one tick. */
interface Due {
  t: number;
  count: number;
}

export class Producer {
  /** Highest seq issued per session index. */
  readonly seq: Int32Array;
  private readonly queues: Due[][];
  private readonly pending: Int32Array;
  private readonly inFlight: Uint8Array;
  private rate = 0;
  /** Active session indexes by phase group. */
  private readonly groups: number[][];
  private readonly carry: number[];
  private readonly cursor: number[];
  private readonly lastTickMs: number[];
  private phase = 0;
  private timer: NodeJS.Timeout | null = null;
  private requestsInFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private window = { sent: 0, requests: 0, errors: 0, firstError: null as string | null, startedMs: 0 };

  constructor(
    private readonly publisher: Publisher,
    private readonly sessions: readonly string[],
    /** Indexes of the sessions that stream. */
    private readonly active: readonly number[],
    private readonly tickMs: number,
    phases = 1,
  ) {
    const groupCount = Math.max(1, Math.min(phases, active.length));
    this.groups = Array.from({ length: groupCount }, (_, g) => active.filter((_, k) => k % groupCount === g));
    this.carry = this.groups.map(() => 0);
    this.cursor = this.groups.map(() => 0);
    this.lastTickMs = this.groups.map(() => 0);
    this.seq = new Int32Array(sessions.length);
    this.pending = new Int32Array(sessions.length);
    this.inFlight = new Uint8Array(sessions.length);
    this.queues = sessions.map(() => []);
  }

  /** Starts (or changes) producing `eventsPerSecond` events in total. */
  run(eventsPerSecond: number): void {
    this.rate = eventsPerSecond;
    if (this.timer) return;
    this.lastTickMs.fill(performance.now());
    this.timer = setInterval(() => this.tickNextGroup(), this.tickMs / this.groups.length);
  }

  /** Stops producing, sends what is still due, and resolves once no request is in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (let g = 0; g < this.groups.length; g++) this.tick(g);
    this.carry.fill(0);
    while (this.requestsInFlight > 0 || this.pending.some((count) => count > 0)) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      for (const index of this.active) this.maybeSend(index);
    }
  }

  /** Counters since the previous call. */
  takeWindow(): ProducerWindow {
    const now = performance.now();
    const { sent, requests, errors, firstError, startedMs } = this.window;
    let backlog = 0;
    for (const index of this.active) backlog += this.pending[index]!;
    this.window = { sent: 0, requests: 0, errors: 0, firstError: null, startedMs: now };
    return {
      sent,
      requests,
      errors,
      firstError,
      backlog,
      seconds: startedMs === 0 ? 0 : (now - startedMs) / 1000,
    };
  }

  private addDue(index: number, t: number, count: number): void {
    this.pending[index]! += count;
    const queue = this.queues[index]!;
    const last = queue[queue.length - 1];
    if (last && last.t === t) last.count += count;
    else queue.push({ t, count });
  }

  private tickNextGroup(): void {
    this.tick(this.phase);
    this.phase = (this.phase + 1) % this.groups.length;
  }

  private tick(g: number): void {
    const group = this.groups[g]!;
    const sessions = group.length;
    if (sessions === 0) return;
    const now = performance.now();
    const share = sessions / this.active.length;
    const due = (this.rate * share * (now - this.lastTickMs[g]!)) / 1000 + this.carry[g]!;
    this.lastTickMs[g] = now;
    let count = Math.floor(due);
    this.carry[g] = due - count;
    // An event's time is when it came due, so time spent waiting behind a slow append counts as latency.
    const t = performance.timeOrigin + now;
    const each = Math.floor(count / sessions);
    if (each > 0) for (const index of group) this.addDue(index, t, each);
    count -= each * sessions;
    // The remainder goes round-robin, so every session gets the same share over time.
    for (; count > 0; count--) {
      this.addDue(group[this.cursor[g]!]!, t, 1);
      this.cursor[g] = (this.cursor[g]! + 1) % sessions;
    }
    for (const index of group) this.maybeSend(index);
  }

  private maybeSend(index: number): void {
    const pending = this.pending[index]!;
    if (pending === 0 || this.inFlight[index] === 1) return;
    const count = Math.min(pending, this.publisher.maxBatch);
    const times: number[] = [];
    const queue = this.queues[index]!;
    while (times.length < count) {
      const head = queue[0]!;
      const take = Math.min(head.count, count - times.length);
      for (let i = 0; i < take; i++) times.push(head.t);
      head.count -= take;
      if (head.count === 0) queue.shift();
    }
    this.pending[index] = pending - count;
    const firstSeq = this.seq[index]! + 1;
    this.seq[index] = firstSeq + count - 1;
    this.inFlight[index] = 1;
    this.requestsInFlight++;
    this.window.sent += count;
    this.window.requests++;
    this.publisher.appendTokens(this.sessions[index]!, firstSeq, times).then(
      () => this.finished(index),
      (error: unknown) => {
        this.window.errors++;
        this.window.firstError ??= String((error as Error)?.message ?? error);
        this.finished(index);
      },
    );
  }

  private finished(index: number): void {
    this.inFlight[index] = 0;
    this.requestsInFlight--;
    // Under load, the next batch goes as soon as the previous one is accepted.
    this.maybeSend(index);
    if (this.requestsInFlight === 0 || this.timer === null) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
