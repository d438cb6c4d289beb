/**
 * The load generator's coordinator: starts worker threads, spreads connections over them, and merges
 * their counters. Workers run TypeScript through tsx's loader, registered inside each thread.
 */
import { Worker } from "node:worker_threads";
import { type HistogramData, merge, newHistogram, summarize } from "../lib/measure.js";
import type { Command, ConnSpec, Envelope, Reply, WorkerStats } from "./protocol.js";

const WORKER_URL = new URL("./worker.ts", import.meta.url).href;
const BOOTSTRAP = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL)}); })`;
/** Above this event-loop utilisation a worker is the bottleneck, not the server. */
export const SATURATED_ELU = 0.9;
const CLOCK_PINGS = 5;

export interface LoadStats extends Omit<WorkerStats, "elu" | "latency" | "sincePublish"> {
  latency: HistogramData;
  sincePublish: HistogramData;
  eluMax: number;
  eluMean: number;
  /** Each thread's event-loop utilisation since the previous snapshot. */
  elus: number[];
  saturated: boolean;
}

export interface OpenResult {
  opened: number;
  failed: number;
  errors: string[];
  seconds: number;
  connectMs: ReturnType<typeof summarize>;
}

class Thread {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: Reply) => void>();
  private failure: Error | null = null;

  constructor(readonly worker: Worker) {
    worker.on("message", (message: Envelope<Reply>) => {
      this.waiting.get(message.id)?.(message.body);
      this.waiting.delete(message.id);
    });
    worker.on("error", (error) => this.fail(error));
    worker.on("exit", (code) => this.fail(new Error(`load-generator worker exited (${code})`)));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const resolve of this.waiting.values()) resolve({ op: "error", message: error.message });
    this.waiting.clear();
  }

  async call(command: Command): Promise<Reply> {
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve) => {
      this.waiting.set(id, resolve);
      this.worker.postMessage({ id, body: command } satisfies Envelope<Command>);
    });
    if (reply.op === "error") throw new Error(`load-generator worker: ${reply.message}`);
    return reply;
  }
}

export class LoadGen {
  private constructor(private readonly threads: Thread[]) {}

  static async start(workers: number): Promise<LoadGen> {
    const threads = Array.from({ length: workers }, () => new Thread(new Worker(BOOTSTRAP, { eval: true })));
    return new LoadGen(threads);
  }

  get workers(): number {
    return this.threads.length;
  }

  /**
   * Tells every worker the session names (indexes in ConnSpec refer to them). Returns each worker's
   * clock offset from this thread's (latency compares timestamps across threads): NTP-style, from
   * the ping with the shortest round trip.
   */
  async init(sessions: readonly string[]): Promise<number[]> {
    await Promise.all(this.threads.map((thread) => thread.call({ op: "init", sessions: [...sessions] })));
    return Promise.all(
      this.threads.map(async (thread) => {
        let best = { rtt: Number.POSITIVE_INFINITY, offset: 0 };
        for (let i = 0; i < CLOCK_PINGS; i++) {
          const sent = performance.timeOrigin + performance.now();
          const reply = await thread.call({ op: "clock" });
          const received = performance.timeOrigin + performance.now();
          if (reply.op === "clock" && received - sent < best.rtt) {
            best = { rtt: received - sent, offset: reply.clockMs - (sent + received) / 2 };
          }
        }
        return Math.round(best.offset * 1000) / 1000;
      }),
    );
  }

  async open(
    host: string,
    port: number,
    conns: readonly ConnSpec[],
    options: { concurrency?: number; timeoutMs?: number } = {},
  ): Promise<OpenResult> {
    const started = performance.now();
    const shares: ConnSpec[][] = this.threads.map(() => []);
    for (const [i, conn] of conns.entries()) shares[i % shares.length]!.push(conn);
    const concurrency = Math.max(1, Math.ceil((options.concurrency ?? 200) / this.threads.length));
    const replies = await Promise.all(
      this.threads.map((thread, i) =>
        thread.call({
          op: "open",
          host,
          port,
          conns: shares[i]!,
          concurrency,
          timeoutMs: options.timeoutMs ?? 30_000,
        }),
      ),
    );
    const connectMs = newHistogram();
    const result: OpenResult = {
      opened: 0,
      failed: 0,
      errors: [],
      seconds: 0,
      connectMs: summarize(connectMs),
    };
    for (const reply of replies) {
      if (reply.op !== "opened") continue;
      result.opened += reply.opened;
      result.failed += reply.failed;
      result.errors.push(...reply.errors);
      merge(connectMs, reply.connectMs);
    }
    result.seconds = Math.round(performance.now() - started) / 1000;
    result.connectMs = summarize(connectMs);
    return result;
  }

  async reset(): Promise<void> {
    await Promise.all(this.threads.map((thread) => thread.call({ op: "reset" })));
  }

  async snapshot(resetWindow = false): Promise<LoadStats> {
    const replies = await Promise.all(
      this.threads.map((thread) => thread.call({ op: "snapshot", resetWindow })),
    );
    const all = replies.flatMap((reply) => (reply.op === "snapshot" ? [reply.stats] : []));
    const latency = newHistogram();
    const sincePublish = newHistogram();
    const sum = (key: keyof WorkerStats) => all.reduce((total, s) => total + (s[key] as number), 0);
    for (const s of all) {
      merge(latency, s.latency);
      merge(sincePublish, s.sincePublish);
    }
    const elus = all.map((s) => s.elu);
    const eluMax = Math.max(0, ...elus);
    return {
      tokens: sum("tokens"),
      others: sum("others"),
      bytes: sum("bytes"),
      chunks: sum("chunks"),
      inOrder: sum("inOrder"),
      outOfOrder: sum("outOfOrder"),
      duplicates: sum("duplicates"),
      gaps: sum("gaps"),
      unknowns: sum("unknowns"),
      parseErrors: sum("parseErrors"),
      foreign: sum("foreign"),
      idBytes: sum("idBytes"),
      ids: sum("ids"),
      idMax: Math.max(0, ...all.map((s) => s.idMax)),
      idLast: Math.max(0, ...all.map((s) => s.idLast)),
      open: sum("open"),
      closedByServer: sum("closedByServer"),
      errors: sum("errors"),
      latency,
      sincePublish,
      eluMax: Math.round(eluMax * 1000) / 1000,
      eluMean: Math.round((elus.reduce((a, b) => a + b, 0) / Math.max(1, elus.length)) * 1000) / 1000,
      elus: elus.map((elu) => Math.round(elu * 1000) / 1000),
      saturated: eluMax > SATURATED_ELU,
    };
  }

  /** Connection-session pairs whose last seq is below `finals` (per session index). */
  async behind(finals: Int32Array): Promise<number> {
    const replies = await Promise.all(this.threads.map((thread) => thread.call({ op: "behind", finals })));
    return replies.reduce((total, reply) => total + (reply.op === "behind" ? reply.pairs : 0), 0);
  }

  async closeConnections(): Promise<void> {
    await Promise.all(this.threads.map((thread) => thread.call({ op: "close" })));
  }

  async terminate(): Promise<void> {
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }
}
