/**
 * Stages: where one append's latency goes, at a rate the gateway sustains with CPU to spare (and at
 * one near its ceiling, to see which stages grow). The fan-out shape (C connections × S of P sessions,
 * sessions staggered over the producer's tick) at fixed rates (`--rates` overrides them); every `STAMP_EVERY`-th append carries its publish time, and the stage probe preloaded into
 * the server (targets/stage-probe.mjs; no change to the server's code) timestamps its path: request
 * head parsed, body read, script sent, acknowledged, notice received and handled, first and last socket
 * write. The producer adds the reply, the load generator the receipt. Each stage's distribution over
 * the traced appends of the measured window is recorded; raw-node runs the same way (HTTP and write
 * stages only), as the floor of what a Node server pays for the same appends.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import {
  cpuPercent,
  type LatencySummary,
  machinePercent,
  newHistogram,
  record,
  sampleMachine,
  sampleProcs,
  summarize,
} from "../lib/measure.js";
import { sleep, waitUntil } from "../lib/procs.js";
import { startTarget, type Target, type TargetName } from "../targets/index.js";
import { openStreams, type StreamShape } from "./streams.js";

/** One append in this many is traced: enough samples, little of the probe's own work. */
const STAMP_EVERY = 4;
/** Rates: with CPU to spare (what the breakdown is for), and near the gateway's ceiling (how it grows). */
const DEFAULT_RATES = [300, 800];

/** What the probe wrote for one traced append (ms since the epoch; see stage-probe.mjs). */
interface ProbeRecord {
  p: number;
  request?: number;
  body?: number;
  sent?: number;
  acked?: number;
  notice?: number;
  dispatched?: number;
  firstWrite?: number;
  lastWrite?: number;
  writes: number;
}

/** The stages, in path order: name, and the two marks it lies between. */
const STAGES: ReadonlyArray<[string, keyof ProbeRecord, keyof ProbeRecord]> = [
  ["publish → request head parsed (client, loopback, HTTP parser)", "p", "request"],
  ["head → body read", "request", "body"],
  ["body → append script sent (JSON, validation, ioredis's turn)", "body", "sent"],
  ["script sent → acknowledged (Redis round trip, the script)", "sent", "acked"],
  ["script sent → notice received (Redis, PUBLISH, subscriber)", "sent", "notice"],
  ["notice handled (hub fan-out to readers, synchronous)", "notice", "dispatched"],
  ["notice handled → first socket write (frames, the turn's flush)", "dispatched", "firstWrite"],
  ["body read → first socket write (the server's whole work, Redis included)", "body", "firstWrite"],
  ["first → last socket write (every subscriber)", "firstWrite", "lastWrite"],
  ["publish → last socket write", "p", "lastWrite"],
];

export interface StageRow {
  stage: string;
  ms: LatencySummary;
}

function stageRows(records: readonly ProbeRecord[], from: number, to: number): StageRow[] {
  const rows: StageRow[] = [];
  for (const [stage, a, b] of STAGES) {
    const h = newHistogram();
    for (const r of records) {
      if (r.p < from || r.p > to) continue;
      const start = r[a];
      const end = r[b];
      if (typeof start === "number" && typeof end === "number") record(h, end - start);
    }
    if (h.count > 0) rows.push({ stage, ms: summarize(h) });
  }
  return rows;
}

interface ProbeReport {
  records: ProbeRecord[];
  /** The server's event loop since the previous report: delay of a ready callback (ms), utilisation. */
  loop: { delayMs: { p50: number; p90: number; p99: number; max: number }; utilization: number };
}

async function dumpProbe(target: Target, dir: string): Promise<ProbeReport> {
  const pid = target.pids()[0]!;
  const file = join(dir, `${pid}.json`);
  rmSync(file, { force: true });
  process.kill(pid, "SIGHUP");
  let text = "";
  await waitUntil(
    "the stage probe's report",
    () => {
      try {
        text = readFileSync(file, "utf8");
        return text.endsWith("}");
      } catch {
        return false;
      }
    },
    10_000,
  );
  return JSON.parse(text) as ProbeReport;
}

async function measure(context: ScenarioContext, name: TargetName, shape: StreamShape, rate: number) {
  const dir = mkdtempSync(join(tmpdir(), "bench-stages-"));
  const timing = context.quick ? { warmupMs: 300, measureMs: 1_000 } : { warmupMs: 2_000, measureMs: 5_000 };
  const target = await startTarget(name, {
    ...context.targetOptions,
    stageProbe: { dir, stampEvery: STAMP_EVERY },
  });
  try {
    const streams = await openStreams(target, context.loadgen, shape, tag("s"));
    const { producer, subscribers, active } = streams;
    const startSeq = Int32Array.from(producer.seq);
    await context.loadgen.reset();
    producer.run(rate);
    await sleep(timing.warmupMs);
    await dumpProbe(target, dir); // the event loop's figures start here
    await context.loadgen.snapshot(true);
    target.publisher.takeStampedReplies?.();
    const from = performance.timeOrigin + performance.now();
    const serverA = sampleProcs(target.pids());
    const selfA = sampleProcs([process.pid]);
    const machineA = sampleMachine();
    await sleep(timing.measureMs);
    const to = performance.timeOrigin + performance.now();
    const serverB = sampleProcs(target.pids());
    const selfB = sampleProcs([process.pid]);
    const machineB = sampleMachine();
    const window = await context.loadgen.snapshot(true);
    const replies = target.publisher.takeStampedReplies?.() ?? newHistogram();
    const { loop } = await dumpProbe(target, dir);
    await producer.stop();
    const finals = Int32Array.from(producer.seq);
    const drainStarted = performance.now();
    let behind = await context.loadgen.behind(finals);
    while (behind > 0 && performance.now() - drainStarted < 15_000) {
      await sleep(50);
      behind = await context.loadgen.behind(finals);
    }
    const end = await context.loadgen.snapshot(false);
    // Once every event is delivered, every traced append of the window has all its writes.
    const { records } = await dumpProbe(target, dir);
    let expected = 0;
    for (const index of active) expected += subscribers[index]! * (finals[index]! - startSeq[index]!);
    const lost = Math.max(0, expected - (end.inOrder + end.outOfOrder));
    if (end.duplicates + end.outOfOrder + end.parseErrors + end.foreign + lost > 0) {
      context.problem(
        `stages ${name}: ${end.duplicates} duplicates, ${end.outOfOrder} out of order, ${end.parseErrors + end.foreign} unreadable, ${lost} lost`,
      );
    }
    const inWindow = records.filter((r) => r.p >= from && r.p <= to);
    const traced = inWindow.filter((r) => r.lastWrite !== undefined);
    const rows = [
      ...stageRows(records, from, to),
      { stage: "publish → reply received by the producer", ms: summarize(replies) },
      { stage: "publish → received by the client (every subscriber)", ms: summarize(window.sincePublish) },
      { stage: "(for reference) due → received, every event", ms: summarize(window.latency) },
    ].filter((row) => row.ms.count > 0);
    const serverCpu = cpuPercent(serverA, serverB);
    const loadgenCpu = cpuPercent(selfA, selfB);
    const data = {
      rate,
      traced: inWindow.length,
      writesPerTracedAppend:
        traced.length > 0
          ? Math.round((traced.reduce((sum, r) => sum + r.writes, 0) / traced.length) * 10) / 10
          : null,
      serverCpuPercent: serverCpu,
      loadgenCpuPercent: loadgenCpu,
      loadgenEluMax: window.eluMax,
      machine: { cores: availableParallelism(), busyPercent: machinePercent(machineA, machineB) },
      loop,
      stages: rows,
    };
    context.log(
      `${name}: ${rate} appends/s, ${inWindow.length} traced appends, server CPU ${serverCpu}% (event loop ${loop.utilization} busy, delay p50 ${loop.delayMs.p50} p99 ${loop.delayMs.p99} ms), loadgen ${loadgenCpu}%, machine ${data.machine.busyPercent}%`,
    );
    for (const row of rows) {
      context.log(`  ${row.stage.padEnd(66)} p50 ${row.ms.p50} p90 ${row.ms.p90} p99 ${row.ms.p99} ms`);
    }
    context.record(
      "stages",
      name,
      { ...shape, ...timing, rate, stampEvery: STAMP_EVERY, subscribersPerSession: maxOf(subscribers) },
      data,
    );
  } finally {
    await context.loadgen.closeConnections();
    await target.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const maxOf = (values: Int32Array) => values.reduce((a, b) => Math.max(a, b), 0);

export const stagesScenario = {
  name: "stages",
  title: "Where one append's latency goes (stage probe, fixed rate with CPU to spare)",
  async run(context: ScenarioContext) {
    const shape: StreamShape = context.quick
      ? { connections: 40, sessionsPerConnection: 5, sessions: 20, tickMs: 50, phases: 10 }
      : { connections: 1000, sessionsPerConnection: 10, sessions: 100, tickMs: 50, phases: 10 };
    const rates = context.fixedRates ?? (context.quick ? [100] : DEFAULT_RATES);
    for (const rate of rates) {
      for (const name of context.targets) {
        if (name === "nchan") continue; // nginx: no Node process to preload the probe into
        await measure(context, name, shape, rate);
      }
    }
  },
};
