/**
 * Idle: C=5000 connections (each multiplexing 10 of 100 existing, quiet sessions) held open. The
 * figure is RSS per connection above the server's own baseline (measured after its sessions exist and
 * before any connection), and the CPU that idle connections cost. The Node servers run a full GC
 * before each sample, so the figure is live memory, not garbage left over from connecting.
 */
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { cpuPercent, sampleProcs } from "../lib/measure.js";
import { sleep } from "../lib/procs.js";
import { startTarget, type Target } from "../targets/index.js";

const GC_SETTLE_MS = 1_000;

import { assignSessions } from "./streams.js";

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
    const idleMs = context.quick ? 1_000 : 10_000;
    for (const name of context.targets) {
      const target = await startTarget(name, context.targetOptions);
      try {
        const ids = Array.from({ length: shape.sessions }, (_, i) => `${tag("i")}-${i}`);
        await target.publisher.createSessions(ids);
        await context.loadgen.init(ids);
        await sleep(settleMs);
        await collectGarbage(target);
        const base = sampleProcs(target.pids());
        const heapBase = name === "gateway" ? await heapUsedBytes(target.host, target.port) : null;
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
        await sleep(idleMs);
        const gc = await collectGarbage(target);
        const after = sampleProcs(target.pids());
        const heapAfter = name === "gateway" ? await heapUsedBytes(target.host, target.port) : null;
        const load = await context.loadgen.snapshot(false);
        if (load.closedByServer > 0)
          context.problem(`idle ${name}: ${load.closedByServer} connections closed by the server`);
        const perConnectionKB = (after.rssBytes - base.rssBytes) / open.opened / 1024;
        const data = {
          opened: open.opened,
          failed: open.failed,
          connectSeconds: open.seconds,
          connectionsPerSecond: Math.round(open.opened / open.seconds),
          connectMs: open.connectMs,
          baseRssMB: Math.round((base.rssBytes / 2 ** 20) * 10) / 10,
          loadedRssMB: Math.round((loaded.rssBytes / 2 ** 20) * 10) / 10,
          rssMB: Math.round((after.rssBytes / 2 ** 20) * 10) / 10,
          perConnectionKB: Math.round(perConnectionKB * 10) / 10,
          idleCpuPercent: cpuPercent(loaded, after),
          /** Whether a full GC ran before the samples (the Node servers); else RSS includes garbage. */
          collectedGarbage: gc,
          /** JS heap in use per connection after the GC (gateway only). */
          heapPerConnectionKB:
            heapBase !== null && heapAfter !== null
              ? Math.round(((heapAfter - heapBase) / open.opened / 1024) * 10) / 10
              : null,
          stillOpen: load.open,
        };
        context.log(
          `${name.padEnd(9)} ${open.opened} connections in ${open.seconds} s; RSS ${data.baseRssMB} → ${data.rssMB} MB ` +
            `= ${data.perConnectionKB} KB per connection${data.heapPerConnectionKB === null ? "" : ` (JS heap ${data.heapPerConnectionKB} KB)`}; idle CPU ${data.idleCpuPercent}%`,
        );
        context.record("idle", name, { ...shape, settleMs, idleMs }, data);
      } finally {
        await context.loadgen.closeConnections();
        await target.stop();
      }
    }
  },
};
