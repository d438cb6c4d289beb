/**
 * One SSE response: headers and first bytes at once, writes coalesced per turn of the event loop,
 * heartbeats, and backpressure. When `write()` returns false the writer reports itself not writable;
 * its owner stops feeding it live events and catches up from the store after `drain`. A client that
 * stays stuck longer than `slowClientTimeoutMs` is closed (it resumes by id).
 */
import type { ServerResponse } from "node:http";
import { commentLine, retryLine, SSE_HEADERS } from "./frames.js";

export interface SseWriterOptions {
  heartbeatMs: number;
  retryMs: number;
  slowClientTimeoutMs: number;
  /** Extra response headers (e.g. X-Session-Id). */
  headers?: Record<string, string>;
}

export interface SseWriterHooks {
  /** The socket accepted everything written so far: the owner may catch up. */
  onDrain(): void;
  /** The response is over, whoever ended it. Called once. */
  onClose(reason: CloseReason): void;
  /** The socket filled up: live events stop until `onDrain`. */
  onFull?(): void;
  onSlowClient?(): void;
}

export type CloseReason = "client" | "server" | "slow";

export class SseWriter {
  private pending: string[] = [];
  private flushScheduled = false;
  private waitingForDrain = false;
  private closed = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private slowTimer: NodeJS.Timeout | undefined;
  private closeReason: CloseReason = "client";

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseWriterOptions,
    private readonly hooks: SseWriterHooks,
  ) {}

  start(): void {
    this.res.writeHead(200, { ...SSE_HEADERS, ...this.options.headers });
    this.res.socket?.setNoDelay(true);
    this.res.on("close", () => this.finish());
    this.res.on("drain", () => this.drained());
    this.writeNow(retryLine(this.options.retryMs));
    this.heartbeat = setInterval(() => {
      if (!this.waitingForDrain) this.send(commentLine("ping"));
    }, this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** False while the socket is full: the owner should stop sending live events. */
  get writable(): boolean {
    return !this.closed && !this.waitingForDrain;
  }

  /** Queues text for this turn's single write. */
  send(text: string): void {
    if (this.closed) return;
    this.pending.push(text);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes queued text, then ends the response. */
  end(finalText?: string): void {
    if (this.closed) return;
    if (finalText) this.pending.push(finalText);
    this.flush();
    this.closeReason = "server";
    this.res.end();
    this.finish();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.pending.length === 0) return;
    const text = this.pending.length === 1 ? this.pending[0]! : this.pending.join("");
    this.pending = [];
    this.writeNow(text);
  }

  private writeNow(text: string): void {
    if (this.res.write(text) || this.waitingForDrain) return;
    this.waitingForDrain = true;
    this.hooks.onFull?.();
    this.slowTimer = setTimeout(() => {
      this.closeReason = "slow";
      this.hooks.onSlowClient?.();
      this.res.destroy();
      this.finish();
    }, this.options.slowClientTimeoutMs);
    this.slowTimer.unref();
  }

  private drained(): void {
    if (!this.waitingForDrain || this.closed) return;
    this.waitingForDrain = false;
    clearTimeout(this.slowTimer);
    this.hooks.onDrain();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    clearInterval(this.heartbeat);
    clearTimeout(this.slowTimer);
    this.hooks.onClose(this.closeReason);
  }
}
