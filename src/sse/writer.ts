/**
 * One SSE response: headers and first bytes at once, writes coalesced per turn of the event loop,
 * heartbeats, and backpressure. When `write()` returns false the writer reports itself not writable;
 * its owner stops feeding it live events and catches up from the store after `drain`. A client that
 * stays stuck longer than `slowClientTimeoutMs` is closed (it resumes by id). What it takes while its
 * socket is full is counted in bytes: past `maxBufferedBytes` it takes nothing more, its owner stops
 * reading for it, and it ends once the client has what it took (or at the timeout), so a stuck client
 * holds at most that much (plus the write that filled its socket), whatever is sent to it.
 *
 * All writers of the process share one flush per turn and one heartbeat timer per interval, so an idle
 * connection costs no timer of its own and a busy turn schedules one callback, not one per connection.
 */
import type { ServerResponse } from "node:http";
import { commentLine, retryLine, SSE_HEADERS } from "./frames.js";

/** The same for every writer of a process: share one object (each open stream keeps it). */
export interface SseWriterOptions {
  readonly heartbeatMs: number;
  readonly retryMs: number;
  readonly slowClientTimeoutMs: number;
  /** Bytes taken while the socket is full before the writer stops taking and ends (default 1 MiB). */
  readonly maxBufferedBytes?: number;
}

const DEFAULT_MAX_BUFFERED_BYTES = 1_048_576;

export interface SseWriterHooks {
  /** The socket accepted everything written so far: the owner may catch up. */
  onDrain(): void;
  /** The response is over, whoever ended it. Called once. */
  onClose(reason: CloseReason): void;
  /** The socket filled up: live events stop until `onDrain`. */
  onFull?(): void;
  /**
   * Too much was sent while the socket was full (`maxBufferedBytes`): the writer takes nothing more
   * and ends once the client has what it took; the owner should stop reading for it now.
   */
  onOverflow?(): void;
  onSlowClient?(): void;
  /** Every write to the socket (for the coalescing ratio). */
  onWrite?(): void;
}

export type CloseReason = "client" | "server" | "slow";

const PING = commentLine("ping");

/** Writers with text queued this turn; flushed together once the turn's I/O is handled. */
const dirtyWriters = new Set<SseWriter>();
let flushScheduled = false;

function flushDirtyWriters(): void {
  flushScheduled = false;
  for (const writer of dirtyWriters) writer.flush();
  dirtyWriters.clear();
}

/** Open writers by heartbeat interval: one timer per interval for the whole process. */
const heartbeats = new Map<number, { writers: Set<SseWriter>; timer: NodeJS.Timeout }>();

function startHeartbeat(writer: SseWriter, intervalMs: number): void {
  let group = heartbeats.get(intervalMs);
  if (!group) {
    const writers = new Set<SseWriter>();
    const timer = setInterval(() => {
      for (const member of writers) member.ping();
    }, intervalMs);
    timer.unref();
    group = { writers, timer };
    heartbeats.set(intervalMs, group);
  }
  group.writers.add(writer);
}

function stopHeartbeat(writer: SseWriter, intervalMs: number): void {
  const group = heartbeats.get(intervalMs);
  if (!group) return;
  group.writers.delete(writer);
  if (group.writers.size === 0) {
    clearInterval(group.timer);
    heartbeats.delete(intervalMs);
  }
}

export class SseWriter {
  private pending = "";
  private waitingForDrain = false;
  private closed = false;
  private slowTimer: NodeJS.Timeout | undefined;
  private closeReason: CloseReason = "client";
  /** Bytes taken since the socket filled up (counted only then: a drained socket holds nothing back). */
  private heldBytes = 0;
  /** Past `maxBufferedBytes`: takes nothing more, ends at the next drain. */
  private overflowed = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseWriterOptions,
    private readonly hooks: SseWriterHooks,
  ) {}

  /** Sends the head, with `headers` (e.g. X-Session-Id, X-Request-Id) besides the SSE ones. */
  start(headers?: Readonly<Record<string, string>> | null): void {
    const { res } = this;
    // The client may have gone while the stream was being set up: its `close` has been emitted already.
    if (res.destroyed) {
      this.finish();
      return;
    }
    const socket = res.socket;
    socket?.setNoDelay(true);
    // Node keeps the head it sent (`res._header`) for the life of the response, as the rope of ~30
    // strings it was concatenated from (~1 KB). Written to the socket on its own (flushHeaders), the
    // string is flattened in place (~300 bytes). Corked, it still leaves with the first bytes.
    socket?.cork();
    try {
      res.writeHead(200, headers ? { ...SSE_HEADERS, ...headers } : SSE_HEADERS);
      res.flushHeaders();
      res.on("close", () => this.finish());
      res.on("drain", () => this.drained());
      // A HEAD response has no body: end it (once the caller is set up) instead of leaving it open.
      if (res.req?.method === "HEAD") {
        setImmediate(() => this.end());
        return;
      }
      // The first line goes out with the head; it joins the block of the first event (see frames.ts).
      this.writeNow(retryLine(this.options.retryMs));
      startHeartbeat(this, this.options.heartbeatMs);
    } finally {
      socket?.uncork();
    }
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** False while the socket is full: the owner should stop sending live events. */
  get writable(): boolean {
    return !this.closed && !this.waitingForDrain && !this.overflowed;
  }

  /** Queues text for this turn's single write. */
  send(text: string): void {
    if (this.closed || this.overflowed) return;
    if (this.waitingForDrain) {
      // Nothing of it leaves until the client reads: counted, and bounded.
      this.heldBytes += Buffer.byteLength(text);
      if (this.heldBytes > (this.options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES)) {
        this.overflow();
        return;
      }
    }
    this.pending += text;
    dirtyWriters.add(this);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushDirtyWriters);
    }
  }

  ping(): void {
    if (!this.waitingForDrain) this.send(PING);
  }

  /** Writes queued text, then ends the response. */
  end(finalText?: string): void {
    if (this.closed) return;
    if (finalText) this.pending += finalText;
    this.flush();
    this.closeReason = "server";
    this.res.end();
    this.finish();
  }

  /** Writes what was queued (called once per turn by the shared flush). */
  flush(): void {
    if (this.closed || this.pending === "") return;
    const text = this.pending;
    this.pending = "";
    this.writeNow(text);
  }

  private writeNow(text: string): void {
    this.hooks.onWrite?.();
    if (this.res.write(text) || this.waitingForDrain) return;
    this.waitingForDrain = true;
    this.hooks.onFull?.();
    this.slowTimer = setTimeout(() => {
      this.closeReason = "slow";
      if (!this.overflowed) this.hooks.onSlowClient?.();
      this.res.destroy();
      this.finish();
    }, this.options.slowClientTimeoutMs);
    this.slowTimer.unref();
  }

  private drained(): void {
    if (!this.waitingForDrain || this.closed) return;
    this.waitingForDrain = false;
    this.heldBytes = 0;
    clearTimeout(this.slowTimer);
    if (this.overflowed) {
      // The client has what was taken (a prefix of what was sent, in order): it resumes after it.
      this.flush();
      this.closeReason = "slow";
      this.res.end();
      this.finish();
      return;
    }
    this.hooks.onDrain();
  }

  /**
   * Stops taking: what was taken stays queued (so the client gets an unbroken prefix and resumes by
   * id after it); nothing sent from now on is kept. The response ends at the next drain, or the
   * slow-client timeout closes it. Text not yet handed to the socket this turn is kept (it is counted).
   */
  private overflow(): void {
    this.overflowed = true;
    this.hooks.onSlowClient?.();
    this.hooks.onOverflow?.();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = "";
    dirtyWriters.delete(this);
    stopHeartbeat(this, this.options.heartbeatMs);
    clearTimeout(this.slowTimer);
    this.hooks.onClose(this.closeReason);
  }
}
