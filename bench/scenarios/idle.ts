/**
 * Idle: C=5000 connections (each multiplexing 10 of 100 existing, quiet sessions) held open. The
 * figure judged is the RSS per connection as the kernel reports it (VmRSS in /proc/<pid>/status) a
 * fixed time after the last connection opened, with no forced GC since before the first: what an
 * operator pays. Its baseline is the same process before any connection, idle and compacted (as V8's
 * memory reducer leaves an idle process), so everything the connections add counts, garbage included.
 *
 * Beside it, as in the earlier runs, each sampled the same way at both ends for every Node server:
 * - `perConnectionKB` after a plain full GC (SIGUSR2). V8 compacts only the pages it chooses to, so
 *   the figure also counts the free space left on old-space pages by garbage promoted while the
 *   connections were set up (V8's memory reducer compacts it away by itself after about a minute).
 * - `compactedPerConnectionKB` after a full GC that compacts every page (SIGWINCH): the memory the
 *   connections keep, and the JS heap and young-generation figures from the GC handler's report.
 * See gc-signal.mjs.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { cpuPercent, sampleProcs } from "../lib/measure.js";
import { sleep } from "../lib/procs.js";
import { startTarget, type Target } from "../targets/index.js";

const GC_SETTLE_MS = 1_000;

import { assignSessions } from "./streams.js";

/** Where the Node servers' GC signal handler writes its report (gc-signal.mjs); set before they start. */
function gcReportDir(): string {
  process.env.GC_REPORT_DIR ??= mkdtempSync(join(tmpdir(), "bench-gc-"));
  return process.env.GC_REPORT_DIR;
}

interface HeapReport {
  heapUsedBytes: number;
  /** The young generation's committed pages: it grows once, up to a fixed size, under allocation. */
  newSpaceBytes: number;
}

/** The heap as the servers' last GC left it (summed over their processes); null without a report. */
function readHeapReport(target: Target): HeapReport | null {
  const sum: HeapReport = { heapUsedBytes: 0, newSpaceBytes: 0 };
  for (const pid of target.pids()) {
    try {
      const report = JSON.parse(readFileSync(join(gcReportDir(), `${pid}.json`), "utf8")) as {
        memory: { heapUsed: number };
        spaces: Record<string, { physicalBytes: number }>;
      };
      sum.heapUsedBytes += report.memory.heapUsed;
      sum.newSpaceBytes += report.spaces.new_space?.physicalBytes ?? 0;
    } catch {
      return null;
    }
  }
  return sum;
}

/** A full GC that compacts every old-space page (Node servers only: SIGWINCH means something else to nginx). */
async function compactGarbage(target: Target): Promise<void> {
  for (const pid of target.pids()) process.kill(pid, "SIGWINCH");
  await sleep(GC_SETTLE_MS);
}

const perConnection = (bytes: number, connections: number) =>
  Math.round((bytes / connections / 1024) * 10) / 10;

/** The gateway's own view of its heap (prom-client default metrics): how much of the RSS is JS objects. */
async function heapUsedBytes(host: string, port: number): Promise<number | null> {
  try {
    const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("nodejs_heap_size_used_bytes "));
    return line ? Number(line.split(" ")[1]) : null;
  } catch {
    return null;
  }
}

/** A full GC before sampling, where the server allows it; the wait lets the GC and page release finish. */
async function collectGarbage(target: Target): Promise<boolean> {
  const done = target.collectGarbage();
  if (done) await sleep(GC_SETTLE_MS);
  return done;
}

export const idleScenario = {
  name: "idle",
  title: "Idle connections: RSS per connection",
  async run(context: ScenarioContext) {
    const connections = context.idleConnections ?? (context.quick ? 200 : 5_000);
    const shape = { connections, sessionsPerConnection: 10, sessions: 100, tickMs: 0 };
    const settleMs = context.quick ? 500 : 3_000;
    /** The judged RSS is read this long after the last connection opened, with no forced GC. */
    const rssAfterMs = context.quick ? 1_000 : 10_000;
    const idleMs = rssAfterMs;
    gcReportDir();
    for (const name of context.targets) {
      const target = await startTarget(name, context.targetOptions);
      try {
        const ids = Array.from({ length: shape.sessions }, (_, i) => `${tag("i")}-${i}`);
        await target.publisher.createSessions(ids);
        await context.loadgen.init(ids);
        await sleep(settleMs);
        const canCollect = await collectGarbage(target);
        const base = sampleProcs(target.pids());
        const heapBase = name === "gateway" ? await heapUsedBytes(target.host, target.port) : null;
        if (canCollect) await compactGarbage(target);
        const compactedBase = canCollect ? sampleProcs(target.pids()) : null;
        const reportBase = canCollect ? readHeapReport(target) : null;
        // The judged figure's baseline: the idle server before any connection (compacted where it can be).
        const idleBase = compactedBase ?? base;
        const conns = assignSessions(shape).map((sessions) => ({
          path: target.streamPath(sessions.map((index) => ids[index]!)),
          sessions,
        }));
        const open = await context.loadgen.open(target.host, target.port, conns, { concurrency: 200 });
        if (open.failed > 0)
          context.problem(`idle ${name}: ${open.failed} connections failed: ${open.errors.join("; ")}`);
        await sleep(settleMs);
        const loaded = sampleProcs(target.pids());
        await context.loadgen.snapshot(true);
        await sleep(Math.max(0, rssAfterMs - settleMs));
        // No forced GC since before the first connection: the RSS an operator sees.
        const noGc = sampleProcs(target.pids());
        const gc = await collectGarbage(target);
        const after = sampleProcs(target.pids());
        const heapAfter = name === "gateway" ? await heapUsedBytes(target.host, target.port) : null;
        if (gc) await compactGarbage(target);
        const compactedAfter = gc ? sampleProcs(target.pids()) : null;
        const reportAfter = gc ? readHeapReport(target) : null;
        const load = await context.loadgen.snapshot(false);
        if (load.closedByServer > 0)
          context.problem(`idle ${name}: ${load.closedByServer} connections closed by the server`);
        const compactedKB =
          compactedBase && compactedAfter
            ? perConnection(compactedAfter.rssBytes - compactedBase.rssBytes, open.opened)
            : null;
        const newSpaceKB =
          reportBase && reportAfter
            ? perConnection(reportAfter.newSpaceBytes - reportBase.newSpaceBytes, open.opened)
            : null;
        const data = {
          opened: open.opened,
          failed: open.failed,
          connectSeconds: open.seconds,
          connectionsPerSecond: Math.round(open.opened / open.seconds),
          connectMs: open.connectMs,
          baseRssMB: Math.round((base.rssBytes / 2 ** 20) * 10) / 10,
          loadedRssMB: Math.round((loaded.rssBytes / 2 ** 20) * 10) / 10,
          rssMB: Math.round((after.rssBytes / 2 ** 20) * 10) / 10,
          /** The judged figure: VmRSS per connection (KiB) rssAfterMs after connecting, no forced GC. */
          rssPerConnectionKiB: perConnection(noGc.rssBytes - idleBase.rssBytes, open.opened),
          /** The anonymous part of it (RssAnon): heap and native allocations, not mapped files. */
          rssAnonPerConnectionKiB: perConnection(noGc.rssAnonBytes - idleBase.rssAnonBytes, open.opened),
          idleBaseRssMB: Math.round((idleBase.rssBytes / 2 ** 20) * 10) / 10,
          noGcRssMB: Math.round((noGc.rssBytes / 2 ** 20) * 10) / 10,
          rssAfterMs,
          perConnectionKB: perConnection(after.rssBytes - base.rssBytes, open.opened),
          idleCpuPercent: cpuPercent(loaded, noGc),
          /** Whether a full GC ran before the samples (the Node servers); else RSS includes garbage. */
          collectedGarbage: gc,
          /** JS heap in use per connection after the GC (gateway only). */
          heapPerConnectionKB:
            heapBase !== null && heapAfter !== null ? perConnection(heapAfter - heapBase, open.opened) : null,
          /** RSS per connection after a compacting full GC (Node servers); null otherwise. */
          compactedPerConnectionKB: compactedKB,
          /** JS heap in use per connection after the compacting GC, read the same way on every Node server. */
          jsHeapPerConnectionKB:
            reportBase && reportAfter
              ? perConnection(reportAfter.heapUsedBytes - reportBase.heapUsedBytes, open.opened)
              : null,
          /** Growth of the young generation's pages, spread per connection: a one-time cost in both figures. */
          newSpacePerConnectionKB: newSpaceKB,
          /**
           * The compacted figure without the young generation's growth, which is committed once whatever
           * the number of connections, and of which a sample finds a few MB more or less committed per run.
           */
          compactedWithoutYoungGenerationKB:
            compactedKB !== null && newSpaceKB !== null
              ? Math.round((compactedKB - newSpaceKB) * 10) / 10
              : null,
          stillOpen: load.open,
        };
        context.log(
          `${name.padEnd(9)} ${open.opened} connections in ${open.seconds} s; VmRSS ${data.idleBaseRssMB} → ${data.noGcRssMB} MB ` +
            `= ${data.rssPerConnectionKiB} KiB per connection ${rssAfterMs / 1000} s in, no forced GC (anonymous ${data.rssAnonPerConnectionKiB}); ` +
            `after a plain GC ${data.perConnectionKB} KB${data.heapPerConnectionKB === null ? "" : ` (JS heap ${data.heapPerConnectionKB} KB)`}; ` +
            (data.compactedPerConnectionKB === null
              ? ""
              : `compacted ${data.compactedPerConnectionKB} KB (JS heap ${data.jsHeapPerConnectionKB} KB, young generation ${data.newSpacePerConnectionKB} KB, without it ${data.compactedWithoutYoungGenerationKB} KB); `) +
            `idle CPU ${data.idleCpuPercent}%`,
        );
        context.record("idle", name, { ...shape, settleMs, idleMs, rssAfterMs }, data);
      } finally {
        await context.loadgen.closeConnections();
        await target.stop();
      }
    }
  },
};
