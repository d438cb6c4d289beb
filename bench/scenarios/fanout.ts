/**
 * Fan-out: C connections × S sessions out of P, the append rate ramped (×2) until a step fails, then
 * bisected; the figure is the highest rate with p99 < 50 ms and nothing lost, as events/s delivered.
 * Every selected target runs the same steps (the gateway first), then one extra step at half the
 * gateway's highest passing rate: latency and CPU per event of every server at the same load.
 *
 * Each ceiling says what bound it: the step that decided it (the lowest failing rate) records the
 * server's CPU, the load generator's (process CPU, each thread's ELU) and the whole machine's. A
 * baseline whose server was not near a full core there (SERVER_BOUND_CPU) while no load-generator
 * thread was saturated did not show its own limit, and the targets are not judged against it.
 */
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { machinePercent, sampleMachine } from "../lib/measure.js";
import { sleep } from "../lib/procs.js";
import { startTarget, type Target, type TargetName } from "../targets/index.js";
import {
  describeStep,
  failedOnLatencyOnly,
  openStreams,
  runStep,
  type StepResult,
  type StepTiming,
  type StreamShape,
  type Streams,
} from "./streams.js";

/** Latency compares the producer's clock with the load-generator threads'; beyond this, say so. */
const MAX_CLOCK_SKEW_MS = 0.5;
/** A server at or above this much of one core where its ceiling was decided ran out of its own CPU. */
export const SERVER_BOUND_CPU = 90;

/** A failing step during which other processes used more than this (percent of a core) was disturbed. */
const DISTURBED_OTHERS_PERCENT = 25;
const MAX_DISTURBED_RETRIES = 2;
/** Quiet: the whole machine below this (percent of a core, between steps) over one second. */
const QUIET_MACHINE_PERCENT = 30;
const MAX_QUIET_WAIT_MS = 15_000;

const disturbed = (step: StepResult) => (step.machine?.othersPercent ?? 0) > DISTURBED_OTHERS_PERCENT;

/** Waits (at most MAX_QUIET_WAIT_MS) until the machine, the harness idle, is quiet for a second. */
async function waitForQuiet(): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < MAX_QUIET_WAIT_MS) {
    const a = sampleMachine();
    await sleep(1_000);
    if (machinePercent(a, sampleMachine()) < QUIET_MACHINE_PERCENT) break;
  }
  return Math.round(performance.now() - started);
}

/** What limited a ceiling, from the step that decided it. */
export interface CeilingBound {
  /** The step's rate: the lowest failing one, or the best when nothing failed. */
  rate: number;
  serverCpuPercent: number;
  loadgenCpuPercent: number;
  loadgenEluMax: number;
  loadgenSaturated: boolean;
  machineBusyPercent: number | null;
  othersPercent: number | null;
  redisCpuPercent: number | null;
  /** The server used (nearly) a whole core there and the load generator was not saturated. */
  serverBound: boolean;
  reason: string;
}

export function boundOf(step: StepResult, failed = true): CeilingBound {
  const server = step.server.cpuPercent;
  const saturated = step.loadgen.saturated;
  const serverBound = failed && server >= SERVER_BOUND_CPU && !saturated;
  const machine = step.machine;
  const reason = !failed
    ? `no step failed up to the plan's highest rate (server at ${server}% of a core there)`
    : serverBound
      ? `server at ${server}% of a core`
      : saturated
        ? `a load-generator thread was saturated (ELU ${step.loadgen.eluMax}); server at ${server}%`
        : machine && machine.busyPercent >= machine.cores * 100 * 0.9
          ? `the machine's ${machine.cores} cores were full (${machine.busyPercent}% busy: server ${server}%, load generator ${step.loadgen.cpuPercent}%, Redis ${step.redis?.cpuPercent ?? 0}%, others ${machine.othersPercent}%)`
          : `latency, with the server at ${server}% of a core and CPU to spare${machine ? ` (machine ${machine.busyPercent}% of ${machine.cores * 100}%)` : ""}`;
  const others =
    machine && machine.othersPercent > DISTURBED_OTHERS_PERCENT
      ? `; other processes used ${machine.othersPercent}% of the machine`
      : "";
  return {
    rate: step.rate,
    serverCpuPercent: server,
    loadgenCpuPercent: step.loadgen.cpuPercent,
    loadgenEluMax: step.loadgen.eluMax,
    loadgenSaturated: saturated,
    machineBusyPercent: machine?.busyPercent ?? null,
    othersPercent: machine?.othersPercent ?? null,
    redisCpuPercent: step.redis?.cpuPercent ?? null,
    serverBound,
    reason: reason + others,
  };
}

interface FanoutPlan {
  shape: StreamShape;
  timing: StepTiming;
  startRate: number;
  maxRate: number;
  /** Ramp steps at most (each doubles the rate). */
  maxRampSteps: number;
  bisectSteps: number;
}

function plan(quick: boolean): FanoutPlan {
  return quick
    ? {
        shape: { connections: 40, sessionsPerConnection: 5, sessions: 20, tickMs: 50 },
        timing: { warmupMs: 300, measureMs: 700, drainTimeoutMs: 10_000, strict: true },
        startRate: 100,
        maxRate: 400,
        maxRampSteps: 2,
        bisectSteps: 1,
      }
    : {
        shape: { connections: 1000, sessionsPerConnection: 10, sessions: 100, tickMs: 50 },
        timing: { warmupMs: 2_000, measureMs: 5_000, drainTimeoutMs: 15_000 },
        startRate: 100,
        maxRate: 200_000,
        maxRampSteps: 12,
        bisectSteps: 4,
      };
}

class Bench {
  target: Target | null = null;
  streams: Streams | null = null;
  /** Tries repeated because of other processes, at most, over one target's ramp (bounds its time). */
  disturbedBudget = 4;

  constructor(
    private readonly context: ScenarioContext,
    private readonly name: TargetName,
    private readonly fanout: FanoutPlan,
  ) {}

  async start(): Promise<void> {
    this.target = await startTarget(this.name, this.context.targetOptions);
    this.streams = await openStreams(this.target, this.context.loadgen, this.fanout.shape, tag("f"));
    const { open, clockSkewMs } = this.streams;
    if (clockSkewMs.some((skew) => Math.abs(skew) > MAX_CLOCK_SKEW_MS)) {
      this.context.log(
        `warning: load-generator thread clocks differ from the producer's by ${clockSkewMs.join(", ")} ms`,
      );
    }
    this.context.log(
      `${this.name}: ${open.opened} connections in ${open.seconds} s (connect p50 ${open.connectMs.p50} ms, p99 ${open.connectMs.p99} ms)`,
    );
  }

  async stop(): Promise<void> {
    await this.context.loadgen.closeConnections();
    await this.target?.stop();
    this.target = null;
    this.streams = null;
  }

  /**
   * One rate. A step that fails on its p99 alone is run once more and the second try decides: on this
   * shared machine one stall of another process (the load generator, Redis, the kernel) can push a
   * p99 over the line. Every target gets the same rule.
   */
  async step(rate: number): Promise<StepResult> {
    const first = await this.try(rate);
    if (!failedOnLatencyOnly(first)) return first;
    let second = await this.try(rate);
    // Other processes on these cores took a share while the step failed: once they are quiet, the
    // rate is tried again (a few times at most), so a neighbour's burst does not end the ramp.
    for (
      let i = 0;
      i < MAX_DISTURBED_RETRIES &&
      this.disturbedBudget > 0 &&
      failedOnLatencyOnly(second) &&
      disturbed(second);
      i++
    ) {
      this.disturbedBudget--;
      const waitedMs = await waitForQuiet();
      this.context.log(
        `other processes used ${second.machine?.othersPercent}% of the machine during that step; waited ${waitedMs} ms for quiet, trying again`,
      );
      second = { ...(await this.try(rate)), disturbedTries: i + 1 };
    }
    return { ...second, firstTry: { latency: first.latency, reasons: first.reasons } };
  }

  async try(rate: number): Promise<StepResult> {
    if (!this.streams) await this.start();
    const step = await runStep(this.streams!, this.context.loadgen, rate, this.fanout.timing);
    this.context.log(describeStep(this.name, step));
    for (const text of step.correctness) this.context.problem(`fanout ${this.name} at ${rate}/s: ${text}`);
    // A step that left the server far behind (or dropped clients) would spoil the next: start afresh.
    if (!step.drained || step.closedByServer > 0) await this.stop();
    return step;
  }
}

async function ceiling(
  context: ScenarioContext,
  name: TargetName,
  fanout: FanoutPlan,
  /** The rate of the comparison step (half the gateway's ceiling); undefined: half this target's own. */
  comparisonRate: number | undefined,
) {
  const bench = new Bench(context, name, fanout);
  const steps: StepResult[] = [];
  try {
    await bench.start();
    const connect = { ...bench.streams!.open, clockSkewMs: bench.streams!.clockSkewMs };
    let lastPass = 0;
    let firstFail = Number.POSITIVE_INFINITY;
    let rate = fanout.startRate;
    for (let i = 0; i < fanout.maxRampSteps && rate <= fanout.maxRate; i++, rate *= 2) {
      const step = await bench.step(rate);
      steps.push(step);
      if (!step.pass) {
        firstFail = rate;
        break;
      }
      lastPass = rate;
    }
    // The first rate failed already: look below it.
    for (rate = fanout.startRate / 2; lastPass === 0 && rate >= fanout.startRate / 16; rate /= 2) {
      const step = await bench.step(rate);
      steps.push(step);
      if (step.pass) lastPass = rate;
      else firstFail = rate;
    }
    for (let i = 0; i < fanout.bisectSteps && Number.isFinite(firstFail) && lastPass > 0; i++) {
      const mid = Math.round((lastPass + firstFail) / 2);
      if (mid <= lastPass || mid >= firstFail) break;
      const step = await bench.step(mid);
      steps.push(step);
      if (step.pass) lastPass = mid;
      else firstFail = mid;
    }
    const best = steps.filter((s) => s.pass).sort((a, b) => b.rate - a.rate)[0] ?? null;
    const deciding = Number.isFinite(firstFail)
      ? steps.filter((s) => s.rate === firstFail).at(-1)
      : (best ?? undefined);
    const halfRate = comparisonRate ?? (best ? Math.max(1, Math.round(best.rate / 2)) : undefined);
    const half = halfRate === undefined ? null : await bench.step(halfRate);
    if (half) steps.push(half);
    return {
      steps,
      best,
      half,
      bound: deciding ? boundOf(deciding, Number.isFinite(firstFail)) : null,
      connect,
      firstFail: Number.isFinite(firstFail) ? firstFail : null,
    };
  } finally {
    await bench.stop();
  }
}

/**
 * Fixed rates, each once, on one set of connections: for comparing two builds (`--gateway-entry`) or
 * two servers at the same load, by CPU per event and latency. Recorded as `<scenario>-fixed`, apart
 * from the ceilings.
 */
async function fixedSteps(
  context: ScenarioContext,
  scenario: string,
  name: TargetName,
  fanout: FanoutPlan,
  rates: readonly number[],
): Promise<void> {
  const timing =
    context.stepSeconds === undefined
      ? fanout.timing
      : { ...fanout.timing, measureMs: Math.round(context.stepSeconds * 1000) };
  const bench = new Bench(context, name, { ...fanout, timing });
  try {
    for (const rate of rates) {
      const step = await bench.try(rate);
      context.record(`${scenario}-fixed`, name, { ...fanout.shape, ...timing, rate }, { step });
    }
  } finally {
    await bench.stop();
  }
}

/**
 * The ramp for one producer shape: `phases` 1 sends every session's events at the same instant of
 * each tick (bursts; the shape of the earlier runs), 10 staggers the sessions over the tick.
 */
function fanoutWithPhases(name: string, title: string, defaultPhases: number) {
  return {
    name,
    title,
    async run(context: ScenarioContext) {
      const planned = plan(context.quick);
      const phases = context.producerPhases ?? defaultPhases;
      const fanout = { ...planned, shape: { ...planned.shape, phases } };
      const { shape } = fanout;
      const subscribersPerSession = (shape.connections * shape.sessionsPerConnection) / shape.sessions;
      // The gateway first: every other server also runs a step at half the gateway's ceiling.
      const targets = [...context.targets].sort((a, b) => Number(b === "gateway") - Number(a === "gateway"));
      let gatewayHalf: number | undefined;
      for (const target of targets) {
        if (context.fixedRates) {
          await fixedSteps(context, name, target, fanout, context.fixedRates);
          continue;
        }
        const result = await ceiling(context, target, fanout, gatewayHalf);
        const best = result.best;
        if (target === "gateway" && best) gatewayHalf = Math.max(1, Math.round(best.rate / 2));
        context.log(
          best
            ? `${target}: highest passing ${best.rate} appends/s = ${best.delivered} events/s delivered; ` +
                `ceiling decided at ${result.bound?.rate}/s by ${result.bound?.reason}`
            : `${target}: no rate passed`,
        );
        context.record(
          name,
          target,
          {
            ...shape,
            subscribersPerSession,
            ...fanout.timing,
            startRate: fanout.startRate,
            p99LimitMs: 50,
          },
          {
            bestRate: best?.rate ?? 0,
            bestDelivered: best?.delivered ?? 0,
            firstFailRate: result.firstFail,
            best,
            half: result.half,
            halfOf: gatewayHalf !== undefined && target !== "gateway" ? "gateway" : "own",
            bound: result.bound,
            connect: result.connect,
            steps: result.steps,
          },
        );
      }
    },
  };
}

export const fanoutScenario = fanoutWithPhases("fanout", "Fan-out ceiling (ramp + bisection)", 1);
export const fanoutStaggeredScenario = fanoutWithPhases(
  "fanout-staggered",
  "Fan-out ceiling, sessions staggered over the producer's tick",
  10,
);
