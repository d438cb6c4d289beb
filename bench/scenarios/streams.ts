/**
 * The streaming core shared by fan-out, dashboard and Redis cost: C connections each multiplexing S
 * of P sessions, a producer at a target rate, and one measured step: warm-up, a measured window,
 * then a drain in which every connection must reach every session's last seq.
 */
import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";
import {
  cpuPercent,
  irqPercent,
  type LatencySummary,
  machinePercent,
  sampleMachine,
  sampleProcs,
  summarize,
} from "../lib/measure.js";
import { sleep } from "../lib/procs.js";
import { Producer } from "../lib/producer.js";
import { type LoadGen, SATURATED_ELU } from "../loadgen/pool.js";
import type { ConnSpec } from "../loadgen/protocol.js";
import { redisCost, type Target } from "../targets/index.js";

/** The figure of merit holds while p99 publish→receive latency stays below this. */
export const P99_LIMIT_MS = 50;
/** A step that ends with more than this many seconds' worth of events not yet appended did not hold the rate. */
const MAX_BACKLOG_SECONDS = 0.5;

export interface StreamShape {
  connections: number;
  sessionsPerConnection: number;
  sessions: number;
  /** Sessions that stream (the first ones); default all. */
  activeSessions?: number;
  tickMs: number;
  /** Producer phase groups (see Producer); default 1: every session sends at the same instant of each tick. */
  phases?: number;
}

export interface Streams {
  readonly target: Target;
  readonly shape: StreamShape;
  readonly producer: Producer;
  /** Connections watching each session. */
  readonly subscribers: Int32Array;
  readonly active: number[];
  readonly open: {
    opened: number;
    failed: number;
    seconds: number;
    connectMs: LatencySummary;
    errors: string[];
  };
  readonly clockSkewMs: number[];
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Connection i watches sessions (i + j·stride) mod P, j < S, with stride coprime to P: every
 * connection gets S distinct sessions, and when P divides C·S every session gets C·S/P watchers.
 */
export function assignSessions(shape: StreamShape): number[][] {
  const { connections, sessionsPerConnection: s, sessions: p } = shape;
  let stride = Math.max(1, Math.floor(p / s));
  while (gcd(stride, p) !== 1) stride++;
  return Array.from({ length: connections }, (_, i) =>
    Array.from({ length: s }, (_, j) => (i + j * stride) % p),
  );
}

export async function openStreams(
  target: Target,
  loadgen: LoadGen,
  shape: StreamShape,
  tag: string,
): Promise<Streams> {
  if (shape.sessionsPerConnection > target.maxSessionsPerConnection) {
    throw new Error(
      `${target.name} allows at most ${target.maxSessionsPerConnection} sessions per connection`,
    );
  }
  const ids = Array.from({ length: shape.sessions }, (_, i) => `${tag}-${i}`);
  await target.publisher.createSessions(ids);
  const clockSkewMs = await loadgen.init(ids);
  const assignment = assignSessions(shape);
  const subscribers = new Int32Array(shape.sessions);
  const conns: ConnSpec[] = assignment.map((sessions) => {
    for (const index of sessions) subscribers[index]!++;
    return { path: target.streamPath(sessions.map((index) => ids[index]!)), sessions };
  });
  const open = await loadgen.open(target.host, target.port, conns);
  if (open.failed > 0) {
    throw new Error(
      `${target.name}: ${open.failed} of ${conns.length} connections failed: ${open.errors.join("; ")}`,
    );
  }
  // Subscriptions settle server-side after the response head (the gateway joins its hub, nchan subscribes).
  await sleep(Math.min(3_000, 200 + shape.connections));
  const active = Array.from({ length: shape.activeSessions ?? shape.sessions }, (_, i) => i);
  const producer = new Producer(target.publisher, ids, active, shape.tickMs, shape.phases);
  return { target, shape, producer, subscribers, active, open, clockSkewMs };
}

export interface StepTiming {
  warmupMs: number;
  measureMs: number;
  drainTimeoutMs: number;
  /** Smoke test: a dropped client or an undelivered event is a violation, not slowness. */
  strict?: boolean;
}

export interface StepResult {
  /** Target rate of appended events per second (all sessions together). */
  rate: number;
  achievedRate: number;
  /** Append requests per second in the measured window (each one script call; several events each when batched). */
  appendRequestsPerSecond?: number;
  /** Token events received per second in the measured window (all connections). */
  delivered: number;
  expectedDelivered: number;
  latency: LatencySummary;
  lost: number;
  duplicates: number;
  outOfOrder: number;
  gaps: number;
  parseErrors: number;
  closedByServer: number;
  producerErrors: number;
  producerError: string | null;
  /** Events due but not yet appended when the window closed. */
  backlog: number;
  drained: boolean;
  drainMs: number;
  bytesPerEvent: number;
  idBytesPerEvent: number;
  /** Delivered events per second of server CPU (nchan: nginx only): efficiency, less sensitive to a busy machine than rates. */
  server: { cpuPercent: number; rssMB: number; eventsPerCpuSecond: number | null };
  redis: ReturnType<typeof redisCost> | null;
  /**
   * The load generator: its whole process (the producer on the main thread, the reading threads, their
   * GC and system time), the busiest reading thread's ELU and each thread's.
   */
  loadgen: {
    cpuPercent: number;
    eluMax: number;
    saturated: boolean;
    mainElu: number;
    threads?: number;
    elus?: number[];
  };
  /**
   * The whole machine (/proc/stat), in percent of one core (at most 100 × cores): everything on these
   * cores, and what was left after the server, Redis and the load generator (others: other processes,
   * the kernel's own threads; not interrupts and softirqs, where loopback TCP's receive path is
   * counted to no process: irq).
   */
  machine?: { cores: number; busyPercent: number; irqPercent?: number; othersPercent: number };
  pass: boolean;
  /** Why the step did not pass (empty when it did). */
  reasons: string[];
  /** Violations of the contract (loss, duplicates, reordering, gaps), as opposed to being too slow. */
  correctness: string[];
  /** Set when this is a second try at the rate, after a first that failed on latency alone. */
  firstTry?: { latency: LatencySummary; reasons: string[] };
  /** Further tries after the second, because other processes took a share of the machine during it. */
  disturbedTries?: number;
}

/** A step that failed on its p99 alone, nothing else: worth a second try (a stall of the shared machine can cause it). */
export function failedOnLatencyOnly(step: StepResult): boolean {
  return !step.pass && step.reasons.length === 1 && step.reasons[0]!.startsWith("p99 ");
}

const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

export async function runStep(
  streams: Streams,
  loadgen: LoadGen,
  rate: number,
  timing: StepTiming,
): Promise<StepResult> {
  const { target, producer, subscribers, active } = streams;
  const startSeq = Int32Array.from(producer.seq);
  await loadgen.reset();
  producer.takeWindow();
  producer.run(rate);
  await sleep(timing.warmupMs);

  const before = await loadgen.snapshot(true);
  const serverA = sampleProcs(target.pids());
  const selfA = sampleProcs([process.pid]);
  const machineA = sampleMachine();
  const redisA = await target.redis?.sample();
  const eluA = performance.eventLoopUtilization();
  const warm = producer.takeWindow();
  await sleep(timing.measureMs);
  const window = await loadgen.snapshot(true);
  const serverB = sampleProcs(target.pids());
  const selfB = sampleProcs([process.pid]);
  const machineB = sampleMachine();
  const redisB = await target.redis?.sample();
  const mainElu = performance.eventLoopUtilization(eluA).utilization;
  const produced = producer.takeWindow();
  const seconds = (serverB.atMs - serverA.atMs) / 1000;

  const drainStarted = performance.now();
  await producer.stop();
  const tail = producer.takeWindow();
  const appendErrors = warm.errors + produced.errors + tail.errors;
  const appendError = warm.firstError ?? produced.firstError ?? tail.firstError;
  const finals = Int32Array.from(producer.seq);
  let drained = false;
  while (performance.now() - drainStarted < timing.drainTimeoutMs) {
    if ((await loadgen.behind(finals)) === 0) {
      drained = true;
      break;
    }
    await sleep(50);
  }
  const drainMs = Math.round(performance.now() - drainStarted);
  const end = await loadgen.snapshot(false);

  let expected = 0;
  for (const index of active) expected += subscribers[index]! * (finals[index]! - startSeq[index]!);
  const lost = Math.max(0, expected - (end.inOrder + end.outOfOrder));
  const tokens = window.tokens - before.tokens;
  const delivered = tokens / seconds;
  let watchers = 0;
  for (const index of active) watchers += subscribers[index]!;
  const latency = summarize(window.latency);
  const serverCpu = cpuPercent(serverA, serverB);
  const loadgenCpu = cpuPercent(selfA, selfB);
  const machineBusy = machinePercent(machineA, machineB);
  const machineIrq = irqPercent(machineA, machineB);
  const redis =
    redisA && redisB
      ? redisCost(
          redisA,
          redisB,
          seconds,
          tokens,
          produced.sent,
          produced.requests * (seconds / produced.seconds),
        )
      : null;

  const correctness: string[] = [];
  if (end.duplicates > 0) correctness.push(`${end.duplicates} duplicates`);
  if (end.outOfOrder > 0) correctness.push(`${end.outOfOrder} out of order`);
  if (end.gaps > 0) correctness.push(`${end.gaps} gap events`);
  if (end.parseErrors + end.foreign > 0)
    correctness.push(`${end.parseErrors + end.foreign} unreadable/foreign`);
  if (lost > 0 && drained) correctness.push(`${lost} lost`);
  // Under overload a server may drop slow clients, and a client may still be catching up when the drain
  // ends: too slow, not wrong. At the smoke test's tiny rates neither may happen.
  const slow: string[] = [];
  if (end.closedByServer > 0) slow.push(`${end.closedByServer} connections closed by the server`);
  if (lost > 0 && !drained) slow.push(`${lost} not delivered within ${timing.drainTimeoutMs} ms`);
  if (appendErrors > 0) slow.push(`${appendErrors} append errors: ${appendError}`);
  if (timing.strict) correctness.push(...slow);
  const reasons = [...correctness, ...(timing.strict ? [] : slow)];
  if (!(latency.p99 < P99_LIMIT_MS)) reasons.push(`p99 ${latency.p99} ms`);
  const achievedRate = produced.sent / produced.seconds;
  if (produced.backlog > rate * MAX_BACKLOG_SECONDS)
    reasons.push(`${produced.backlog} events waiting to be appended`);
  if (mainElu > SATURATED_ELU) reasons.push(`producer saturated (main thread ELU ${round(mainElu, 2)})`);

  return {
    rate,
    achievedRate: round(achievedRate, 0),
    appendRequestsPerSecond: round(produced.requests / produced.seconds, 0),
    delivered: round(delivered, 0),
    expectedDelivered: round((rate * watchers) / active.length, 0),
    latency,
    lost,
    duplicates: end.duplicates,
    outOfOrder: end.outOfOrder,
    gaps: end.gaps,
    parseErrors: end.parseErrors + end.foreign,
    closedByServer: end.closedByServer,
    producerErrors: appendErrors,
    producerError: appendError,
    backlog: produced.backlog,
    drained,
    drainMs,
    bytesPerEvent: tokens > 0 ? round((window.bytes - before.bytes) / tokens) : 0,
    idBytesPerEvent:
      window.ids > before.ids ? round((window.idBytes - before.idBytes) / (window.ids - before.ids)) : 0,
    server: {
      cpuPercent: serverCpu,
      rssMB: round(serverB.rssBytes / 2 ** 20),
      eventsPerCpuSecond: serverCpu > 0 ? round(delivered / (serverCpu / 100), 0) : null,
    },
    redis,
    loadgen: {
      cpuPercent: loadgenCpu,
      eluMax: window.eluMax,
      saturated: window.saturated,
      mainElu: round(mainElu, 3),
      threads: window.elus.length,
      elus: window.elus,
    },
    machine: {
      cores: availableParallelism(),
      busyPercent: machineBusy,
      irqPercent: machineIrq,
      othersPercent: round(
        Math.max(0, machineBusy - machineIrq - serverCpu - loadgenCpu - (redis?.cpuPercent ?? 0)),
        1,
      ),
    },
    pass: reasons.length === 0,
    reasons,
    correctness,
  };
}

/** One line per step for the console. */
export function describeStep(name: string, step: StepResult): string {
  const l = step.latency;
  return (
    `${name.padEnd(9)} rate ${String(step.rate).padStart(6)}/s → ${String(step.delivered).padStart(8)} ev/s ` +
    `p50 ${l.p50} p99 ${l.p99} max ${l.max} ms, cpu ${step.server.cpuPercent}% ` +
    `(loadgen ${step.loadgen.cpuPercent}%${step.loadgen.saturated ? " SATURATED" : ""}` +
    `${step.machine ? `; machine ${step.machine.busyPercent}% of ${step.machine.cores * 100}%, others ${step.machine.othersPercent}%` : ""}) ` +
    `${step.pass ? "pass" : `FAIL: ${step.reasons.join(", ")}`}` +
    `${step.firstTry ? ` (second try; first: ${step.firstTry.reasons.join(", ")})` : ""}`
  );
}
