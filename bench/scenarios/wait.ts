/**
 * The cost of durable acknowledgements (REDIS_WAIT_REPLICAS=1): the store's appends on a primary with
 * one replica (both redis-servers of the harness's own), without and with WAIT 1, through the same
 * backend factory the gateway uses (in this process: no HTTP, so the numbers are the store's own).
 * Per mode: one writer appending in a closed loop (latency: the append's answer, and its notice's
 * arrival on the backend's own subscriber connection), then many writers at once, each on its own
 * session as runs are (throughput, latency), with the primary's CPU and commands per append.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { type Backend, connectToUrl, createRedisBackend } from "../../src/backend/index.js";
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { newHistogram, record, summarize } from "../lib/measure.js";
import { freePort, spawnProc, waitUntil } from "../lib/procs.js";
import { type RedisServer, redisCost, startRedisServer } from "../targets/redis.js";

const RETENTION = {
  maxEventsPerSession: 10_000,
  lifecycleMaxEvents: 10_000,
  endedSessionTtlSeconds: 600,
  idleSessionTtlSeconds: 600,
  requestRecordTtlSeconds: 300,
};

interface Mode {
  name: "no-wait" | "wait-1";
  replicas: number;
}

const MODES: readonly Mode[] = [
  { name: "no-wait", replicas: 0 },
  { name: "wait-1", replicas: 1 },
];

async function startReplica(primary: RedisServer) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "sse-bench-replica-"));
  const proc = spawnProc("redis-replica", "redis-server", [
    ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    ...["--dir", dir, "--loglevel", "warning", "--replicaof", "127.0.0.1", String(primary.port)],
  ]);
  const probe = new Redis({ port: primary.port, host: "127.0.0.1", lazyConnect: true });
  probe.on("error", () => {});
  await probe.connect();
  await waitUntil(
    "the replica to come online",
    async () => /slave0:.*state=online/.test(await probe.info("replication")),
    20_000,
    proc,
  );
  probe.disconnect();
  return {
    async stop() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `writers` closed loops (each its own session and writer sequence) for `ms`, or `count` appends each. */
async function appendLoad(backend: Backend, writers: number, limit: { ms?: number; count?: number }) {
  const { store } = backend;
  const ack = newHistogram();
  const notice = newHistogram();
  const pending = new Map<string, number>();
  store.notifier.setListener({
    onAppend(appended) {
      const started = pending.get(`${appended.sessionId}\t${appended.events[0]!.data}`);
      if (started !== undefined) record(notice, performance.now() - started);
    },
    onResync() {},
  });
  const ids = Array.from({ length: writers }, () => tag("w"));
  for (const id of ids) {
    await store.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
    await store.notifier.watch(id);
  }
  const deadline = limit.ms === undefined ? Number.POSITIVE_INFINITY : performance.now() + limit.ms;
  let appended = 0;
  const started = performance.now();
  await Promise.all(
    ids.map(async (id, writer) => {
      for (
        let seq = 1;
        performance.now() < deadline && (limit.count === undefined || seq <= limit.count);
        seq++
      ) {
        const data = { content: ` token ${seq}` };
        const sent = performance.now();
        // Without WAIT the notice may come before the answer: the sent time is noted first.
        pending.set(`${id}\t${JSON.stringify(data)}`, sent);
        const outcome = await store.append(id, [{ type: "token", data }], {
          writer: { writerId: `bench-${writer}`, seq },
        });
        record(ack, performance.now() - sent);
        if (outcome.kind !== "appended") throw new Error(`append ${id}#${seq}: ${outcome.kind}`);
        appended++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  // The last notices may still be on their way.
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const id of ids) store.notifier.unwatch(id);
  return {
    appended,
    seconds: Math.round(seconds * 100) / 100,
    appendsPerSecond: Math.round(appended / seconds),
    ack: summarize(ack),
    notice: summarize(notice),
  };
}

export const waitScenario = {
  name: "wait",
  title:
    "Durable acknowledgements: append latency and throughput without and with WAIT 1 (a primary, one replica)",
  needsBuild: false,
  async run(context: ScenarioContext) {
    const single = context.quick ? 100 : 2_000;
    const writers = context.quick ? 8 : 64;
    const measureMs = context.quick ? 1_000 : 8_000;
    const primary = await startRedisServer();
    const replica = await startReplica(primary);
    try {
      for (const mode of MODES) {
        const backend = await createRedisBackend({
          keyPrefix: `${tag("bw")}:`,
          retention: RETENTION,
          subscriptionLimits: { maxSessions: 100, ttlSeconds: 600 },
          connect: connectToUrl(primary.url),
          instanceId: `bench-${mode.name}`,
          logger: pino({ level: "silent" }),
          ...(mode.replicas > 0 ? { durable: { replicas: mode.replicas, timeoutMs: 1_000 } } : {}),
        });
        try {
          const one = await appendLoad(backend, 1, { count: single });
          const before = await primary.sample();
          const many = await appendLoad(backend, writers, { ms: measureMs });
          const after = await primary.sample();
          const cost = redisCost(before, after, many.seconds, many.appended, many.appended);
          const waits =
            after.byCommand.wait !== undefined ? after.byCommand.wait - (before.byCommand.wait ?? 0) : 0;
          context.log(
            `${mode.name}: 1 writer: answer p50 ${one.ack.p50} ms p99 ${one.ack.p99} ms, notice p50 ${one.notice.p50} ms p99 ${one.notice.p99} ms (${one.appendsPerSecond}/s)\n` +
              `    ${writers} writers: ${many.appendsPerSecond} appends/s, answer p50 ${many.ack.p50} ms p99 ${many.ack.p99} ms, ` +
              `notice p50 ${many.notice.p50} ms p99 ${many.notice.p99} ms; primary ${cost.cpuMicrosPerPublished} µs CPU and ` +
              `${cost.commandsPerDelivered} commands per append, ${waits} WAITs (${many.appended > 0 ? Math.round((waits / many.appended) * 1000) / 1000 : 0} per append)`,
          );
          context.record(
            "wait",
            mode.name,
            { replicas: mode.replicas, single, writers, measureMs },
            { single: one, concurrent: many, primary: cost, waits },
          );
        } finally {
          await backend.close();
        }
      }
    } finally {
      await replica.stop();
      await primary.stop();
    }
  },
};
