/**
 * Replay: one client resumes a 100,000-event backlog (after the session's first event), once on the
 * single-session stream (`?lastEventId=<position>`) and once on a multiplexed connection (a cursor);
 * the figure is events/s from the request until the last backlog event arrived. Gateway only: the
 * baselines keep no history.
 */
import { encodeCursor } from "../../src/mux/cursor.js";
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { expectOk, httpClient } from "../lib/http.js";
import { cpuPercent, sampleProcs } from "../lib/measure.js";
import { sleep } from "../lib/procs.js";
import { startTarget } from "../targets/index.js";

const BATCH = 1_000;

export const replayScenario = {
  name: "replay",
  title: "Replay of a 100,000-event backlog to one client",
  async run(context: ScenarioContext) {
    if (!context.targets.includes("gateway")) return;
    const backlog = context.quick ? 5_000 : 100_000;
    const timeoutMs = context.quick ? 20_000 : 120_000;
    const target = await startTarget("gateway", {
      ...context.targetOptions,
      gatewayEnv: { MAX_EVENTS_PER_SESSION: String(backlog * 2) },
    });
    const client = httpClient(target.host, target.port);
    try {
      const id = `${tag("r")}-0`;
      const start = await client.json<{ ids: string[] }>("POST", `/api/v1/sessions/${id}/events`, {
        events: [{ type: "start", data: { model: "bench", createdAt: new Date().toISOString() } }],
      });
      expectOk("create the replay session", start);
      const startId = start.body.ids[0]!;
      const filled = performance.now();
      for (let seq = 1; seq <= backlog; seq += BATCH) {
        await target.publisher.appendTokens(
          id,
          seq,
          new Array<number>(Math.min(BATCH, backlog - seq + 1)).fill(Date.now()),
        );
      }
      context.log(`backlog of ${backlog} events appended in ${Math.round(performance.now() - filled)} ms`);
      await context.loadgen.init([id]);
      const finals = Int32Array.of(backlog);
      const cursor = encodeCursor({ positions: new Map([[0, startId]]), finished: new Set() });
      const variants = [
        { framing: "single", path: `/api/v1/sessions/${id}/stream?lastEventId=${startId}` },
        { framing: "mux", path: `/api/v1/stream?sessions=${id}&lastEventId=${cursor}` },
      ];
      for (const variant of variants) {
        await context.loadgen.reset();
        const before = sampleProcs(target.pids());
        const started = performance.now();
        const open = await context.loadgen.open(target.host, target.port, [
          { path: variant.path, sessions: [0] },
        ]);
        if (open.failed > 0) throw new Error(`replay ${variant.framing}: ${open.errors.join("; ")}`);
        let live = false;
        while (performance.now() - started < timeoutMs) {
          if ((await context.loadgen.behind(finals)) === 0) {
            live = true;
            break;
          }
          await sleep(5);
        }
        const seconds = (performance.now() - started) / 1000;
        const after = sampleProcs(target.pids());
        const load = await context.loadgen.snapshot(true);
        await context.loadgen.closeConnections();
        const data = {
          live,
          seconds: Math.round(seconds * 1000) / 1000,
          eventsPerSecond: Math.round(load.inOrder / seconds),
          received: load.inOrder,
          duplicates: load.duplicates,
          outOfOrder: load.outOfOrder,
          bytesPerEvent: load.tokens > 0 ? Math.round((load.bytes / load.tokens) * 10) / 10 : 0,
          firstByteMs: open.connectMs.p50,
          serverCpuPercent: cpuPercent(before, after),
          loadgenElu: load.eluMax,
          loadgenSaturated: load.saturated,
        };
        context.log(
          `${variant.framing.padEnd(6)} ${data.received} events in ${data.seconds} s = ${data.eventsPerSecond} events/s ` +
            `(gateway CPU ${data.serverCpuPercent}%, loadgen ELU ${data.loadgenElu})`,
        );
        if (!live)
          context.problem(
            `replay ${variant.framing}: not live after ${timeoutMs} ms (${load.inOrder}/${backlog})`,
          );
        if (load.duplicates + load.outOfOrder + load.gaps > 0) {
          context.problem(
            `replay ${variant.framing}: ${load.duplicates} duplicates, ${load.outOfOrder} out of order`,
          );
        }
        context.record("replay", "gateway", { backlog, framing: variant.framing }, data);
      }
    } finally {
      client.close();
      await context.loadgen.closeConnections();
      await target.stop();
    }
  },
};
