/**
 * What the harness measures outside the load generator: a mergeable latency histogram, process
 * CPU and RSS from /proc, and the machine and versions a result was produced on.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";

/** Log buckets, 2% wide, from 1 µs: precise enough for percentiles, small enough to post between threads. */
const BUCKET_RATIO = 1.02;
const BUCKET_BASE_MS = 0.001;
export const HISTOGRAM_BUCKETS = 1_100;
const LOG_RATIO = Math.log(BUCKET_RATIO);

export interface HistogramData {
  counts: Float64Array;
  count: number;
  maxMs: number;
  /** Latencies below zero: clock skew between threads (should stay 0). */
  negative: number;
}

export function newHistogram(): HistogramData {
  return { counts: new Float64Array(HISTOGRAM_BUCKETS), count: 0, maxMs: 0, negative: 0 };
}

export function record(h: HistogramData, ms: number): void {
  h.count++;
  if (ms > h.maxMs) h.maxMs = ms;
  if (ms < BUCKET_BASE_MS) {
    if (ms < 0) h.negative++;
    h.counts[0]!++;
    return;
  }
  const bucket = Math.min(HISTOGRAM_BUCKETS - 1, Math.ceil(Math.log(ms / BUCKET_BASE_MS) / LOG_RATIO));
  h.counts[bucket]!++;
}

export function merge(into: HistogramData, from: HistogramData): void {
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) into.counts[i]! += from.counts[i]!;
  into.count += from.count;
  into.maxMs = Math.max(into.maxMs, from.maxMs);
  into.negative += from.negative;
}

/** The upper edge of the bucket holding quantile q (0..1): conservative by at most 2%. */
export function quantile(h: HistogramData, q: number): number {
  if (h.count === 0) return Number.NaN;
  const rank = Math.ceil(q * h.count);
  let seen = 0;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
    seen += h.counts[i]!;
    if (seen >= rank) return Math.min(h.maxMs, BUCKET_BASE_MS * BUCKET_RATIO ** i);
  }
  return h.maxMs;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function summarize(h: HistogramData): LatencySummary {
  const round = (ms: number) => Math.round(ms * 1000) / 1000;
  return {
    count: h.count,
    p50: round(quantile(h, 0.5)),
    p90: round(quantile(h, 0.9)),
    p99: round(quantile(h, 0.99)),
    max: round(h.maxMs),
  };
}

// ---- processes ----------------------------------------------------------------------------------

const CLOCK_TICKS_PER_SECOND = 100;

export interface ProcSample {
  atMs: number;
  cpuSeconds: number;
  /** VmRSS as the kernel reports it (/proc/<pid>/status), summed. */
  rssBytes: number;
  /** RssAnon: the anonymous part of it (heap, stacks; not the mapped binary and libraries). */
  rssAnonBytes: number;
}

/** CPU (user+system) and RSS summed over `pids`; a pid that is gone counts as zero. */
export function sampleProcs(pids: readonly number[]): ProcSample {
  let ticks = 0;
  let rssBytes = 0;
  let rssAnonBytes = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const rss = /VmRSS:\s+(\d+) kB/.exec(status);
      if (rss) rssBytes += Number(rss[1]) * 1024;
      const anon = /RssAnon:\s+(\d+) kB/.exec(status);
      if (anon) rssAnonBytes += Number(anon[1]) * 1024;
    } catch {
      // exited
    }
  }
  return { atMs: performance.now(), cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, rssBytes, rssAnonBytes };
}

export interface MachineSample {
  atMs: number;
  /** CPU seconds spent busy (not idle, not waiting on I/O) over all cores since boot. */
  busySeconds: number;
  /** Of which serving interrupts and softirqs (loopback TCP's receive path is mostly here, counted to no process). */
  irqSeconds: number;
}

/** The whole machine's busy CPU time (/proc/stat), to see what every process together used. */
export function sampleMachine(): MachineSample {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return {
    atMs: performance.now(),
    busySeconds: busy / CLOCK_TICKS_PER_SECOND,
    irqSeconds: (f[5]! + f[6]!) / CLOCK_TICKS_PER_SECOND,
  };
}

/** Percent of one core the whole machine was busy between two samples (up to 100 × cores). */
export function machinePercent(a: MachineSample, b: MachineSample): number {
  const seconds = (b.atMs - a.atMs) / 1000;
  return seconds > 0 ? Math.round(((b.busySeconds - a.busySeconds) / seconds) * 1000) / 10 : 0;
}

/** Percent of one core spent in interrupts and softirqs between two samples. */
export function irqPercent(a: MachineSample, b: MachineSample): number {
  const seconds = (b.atMs - a.atMs) / 1000;
  return seconds > 0 ? Math.round(((b.irqSeconds - a.irqSeconds) / seconds) * 1000) / 10 : 0;
}

/** Percent of one core between two samples. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  const seconds = (b.atMs - a.atMs) / 1000;
  return seconds > 0 ? Math.round(((b.cpuSeconds - a.cpuSeconds) / seconds) * 1000) / 10 : 0;
}

/** The direct children of a process (nginx's workers). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter((part) => part !== "")
      .map(Number);
  } catch {
    return [];
  }
}

// ---- machine and versions -----------------------------------------------------------------------

/** The first line a command prints (stdout, else stderr: `nginx -v` writes there). */
function firstLine(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.error) return "unavailable";
  const text = (result.stdout || result.stderr || "").trim();
  return text.split("\n")[0] ?? "";
}

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  openFileLimit: number | string;
  versions: Record<string, string>;
}

export function machineInfo(openFiles: number): MachineInfo {
  return {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: firstLine("uname", ["-sr"]),
    openFileLimit: Number.isFinite(openFiles) ? openFiles : "unlimited",
    versions: {
      node: process.version,
      redis: firstLine("redis-server", ["--version"]).replace(/^Redis server /, ""),
      nginx: firstLine("nginx", ["-v"]).replace(/^nginx version: /, ""),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
      nchan: firstLine("dpkg-query", ["-W", "-f=${Version}", "libnginx-mod-nchan"]),
      gateway: firstLine("git", ["rev-parse", "--short", "HEAD"]),
    },
  };
}
