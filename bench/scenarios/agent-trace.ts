/**
 * Where a run's time to first token goes, seen from outside the gateway: a few extra runs per path
 * with Redis's MONITOR on, each Redis command placed on the client's clock next to the client's own
 * marks (request sent, the upstream request at the fixture, response head, first token). MONITOR
 * slows Redis a little, so these runs are kept apart from the timed ones; their stages are medians.
 *
 * Stages, from the request being sent: the admission's scripts reach Redis; the session's creation
 * (its `running` status written); the upstream request reaches the fixture; the response head; the
 * stream's reader subscribes to the session's notices; the first token's append runs in Redis; the
 * first token reaches the client. The AI SDK door also looks the chat up first (`HGETALL` of its
 * subscription set).
 */
import { Redis } from "ioredis";
import type { Timing } from "./agent-read.js";

export interface TraceStages {
  chatLookupMs?: number;
  admittedMs: number;
  createdMs: number;
  upstreamMs: number;
  headMs: number;
  subscribedMs: number;
  appendedMs: number;
  firstTokenMs: number;
}

interface Seen {
  atMs: number;
  args: string[];
  lua: boolean;
}

/** Wall-clock milliseconds on this process's clock, comparable with Redis's MONITOR times. */
const wallNow = () => performance.timeOrigin + performance.now();

const median = (values: number[]) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!;
};
const r3 = (value: number) => Math.round(value * 1000) / 1000;

export class RedisTrace {
  private seen: Seen[] = [];
  /** Redis's clock minus this process's wall clock, ms. */
  private offsetMs = 0;

  private constructor(
    private readonly monitor: Redis,
    private readonly probe: Redis,
  ) {}

  static async start(url: string): Promise<RedisTrace> {
    // `monitor()` opens a connection of its own beside the client it is called on: both are closed by stop().
    const probe = new Redis(url);
    const monitor = await probe.monitor();
    const trace = new RedisTrace(monitor, probe);
    monitor.on("monitor", (time: string, args: string[], source: string) => {
      trace.seen.push({ atMs: Number(time) * 1000, args, lua: source === "lua" });
    });
    await trace.calibrate();
    return trace;
  }

  /** Redis's clock against ours: an ECHO's MONITOR time against the middle of its round trip (best of 20). */
  private async calibrate(): Promise<void> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 20; i++) {
      const mark = `bench-clock-${i}`;
      const before = wallNow();
      await this.probe.echo(mark);
      const after = wallNow();
      await new Promise((resolve) => setTimeout(resolve, 5));
      const at = this.seen.find((s) => s.args[0]?.toLowerCase() === "echo" && s.args[1] === mark)?.atMs;
      if (at !== undefined && after - before < best) {
        best = after - before;
        this.offsetMs = at - (before + after) / 2;
      }
    }
    this.seen = [];
  }

  /** Runs one request and places its session's Redis commands on its timeline. */
  async traceRun(run: () => Promise<Timing>): Promise<TraceStages | null> {
    this.seen = [];
    const sent = wallNow();
    const startedAt = performance.now();
    const timing = await run();
    const lag = performance.now() - startedAt;
    // MONITOR's lines for the first token's append come over their own connection: let them arrive.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const since = (atMs: number) => atMs - this.offsetMs - sent;
    const after = this.seen.filter((s) => since(s.atMs) >= 0 && since(s.atMs) <= lag + 20);
    const key = (s: Seen, part: string) => s.args.some((a) => a.includes(part));
    const created = after.find(
      (s) => s.lua && s.args[0] === "HSET" && s.args.includes("running") && /:s:\{[^@]/.test(s.args[1] ?? ""),
    );
    const id = /:s:\{([^}]+)\}:meta/.exec(created?.args[1] ?? "")?.[1];
    if (!created || !id) return null;
    const first = (test: (s: Seen) => boolean) => {
      const found = after.find(test);
      return found ? r3(since(found.atMs)) : Number.NaN;
    };
    const chatLookup = first(
      (s) => !s.lua && s.args[0]?.toLowerCase() === "hgetall" && key(s, ":sub:{chat_"),
    );
    return {
      ...(Number.isNaN(chatLookup) ? {} : { chatLookupMs: chatLookup }),
      admittedMs: first(
        (s) => !s.lua && s.args[0]?.toLowerCase().startsWith("eval") === true && key(s, "limit:"),
      ),
      createdMs: r3(since(created.atMs)),
      upstreamMs: r3(timing.upstreamMs),
      headMs: r3(timing.headersMs),
      subscribedMs: first((s) => !s.lua && s.args[0]?.toLowerCase() === "subscribe" && key(s, `{${id}}`)),
      appendedMs: first(
        (s) => s.lua && s.args[0] === "XADD" && key(s, `{${id}}:events`) && s.args.includes("token"),
      ),
      firstTokenMs: r3(timing.firstTokenMs),
    };
  }

  async stop(): Promise<void> {
    this.monitor.disconnect();
    this.probe.disconnect();
  }
}

/** Medians of each stage over a path's traced runs. */
export function traceMedians(list: TraceStages[]): TraceStages & { runs: number } {
  const of = (pick: (s: TraceStages) => number | undefined) =>
    r3(median(list.map((s) => pick(s) ?? Number.NaN)));
  const chat = list.some((s) => s.chatLookupMs !== undefined);
  return {
    runs: list.length,
    ...(chat ? { chatLookupMs: of((s) => s.chatLookupMs) } : {}),
    admittedMs: of((s) => s.admittedMs),
    createdMs: of((s) => s.createdMs),
    upstreamMs: of((s) => s.upstreamMs),
    headMs: of((s) => s.headMs),
    subscribedMs: of((s) => s.subscribedMs),
    appendedMs: of((s) => s.appendedMs),
    firstTokenMs: of((s) => s.firstTokenMs),
  };
}
