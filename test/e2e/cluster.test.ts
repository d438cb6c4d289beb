/**
 * End to end: three gateway PROCESSES on one persistent redis-server, behind the system nginx running
 * the project's own config (nginx/gateway.conf rendered by nginx/render.mjs). Runs are started directly
 * on the instances; clients read them through nginx on multiplexed connections and reconnect by
 * themselves (Last-Event-ID = the last cursor) whenever a stream ends early. Then:
 *  1. SIGKILL of an instance mid-stream: every client ends with every event exactly once; the dead
 *     instance's runs end with `error {code:"interrupted"}` (lease expiry), the others with `done`.
 *  2. SIGTERM of an instance: its clients move through nginx, nothing is lost, its runs finish with
 *     `done`, and it exits 0.
 *  3. Redis stopped for 5 s mid-stream and started again (same port and data dir): every instance is
 *     unready and refuses new runs meanwhile; afterwards every client ends with every event exactly
 *     once; runs whose outage buffer overflowed end with `store_unavailable` and nothing after; the
 *     others end with `done`, even on an instance that reconnects to Redis after the rest.
 * Each scenario first starts again any instance a previous one killed.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { getJson, postJson, type RedisServerHandle, randomPrefix, startRedis } from "../helpers/index.js";
import { nginxBinary } from "./helpers/binaries.js";
import {
  createInstances,
  e2eGatewayEnv,
  ensureRunning,
  freePorts,
  GatewayInstance,
  logTails,
} from "./helpers/cluster.js";
import type { ResilientMuxClient } from "./helpers/mux-client.js";
import { type NginxHandle, startNginx } from "./helpers/nginx.js";
import { waitUntil } from "./helpers/process.js";
import { setupSuite } from "./helpers/setup.js";
import {
  deliveryProblems,
  readStoredSessions,
  type StoredSession,
  storyProblems,
  terminalOf,
  tokenCount,
} from "./helpers/verify.js";
import {
  coverage,
  everySessionStreaming,
  finishAll,
  makeClients,
  startReading,
  startRuns,
} from "./helpers/workload.js";

const CLIENT_TIMEOUT_MS = 60_000;
const OUTAGE_MS = 5_000;
/** How long one instance stays paused after Redis returns: under LEASE_MS (2 s), above Redis's own start. */
const LATE_RECONNECT_MS = 1_200;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A complete run: `tokens` tokens, the usage, and `done` whose total is the usage's (API: upstream usage wins). */
function expectDone(session: StoredSession, tokens: number, instance: string): void {
  const where = `${session.id} (on ${instance})`;
  expect(terminalOf(session)?.type, `${where} ended with ${JSON.stringify(terminalOf(session))}`).toBe(
    "done",
  );
  expect(tokenCount(session.events), where).toBe(tokens);
  const usage = session.events.find((event) => event.type === "usage");
  expect(usage?.data, where).toMatchObject({ completion_tokens: tokens });
  const total = (usage?.data as { total_tokens?: unknown } | undefined)?.total_tokens;
  expect(terminalOf(session), where).toEqual({
    type: "done",
    data: { session_id: session.id, total_tokens: total, finish_reason: "stop" },
  });
}

describe("e2e: 3 gateway processes behind nginx on one persistent Redis", () => {
  let redis: RedisServerHandle | undefined;
  let nginx: NginxHandle | undefined;
  let instances: GatewayInstance[] = [];
  const extraInstances: GatewayInstance[] = [];
  const openClients: ResilientMuxClient[] = [];
  let gatewayEnv: Record<string, string> = {};

  const failureContext = () =>
    `${logTails([...instances, ...extraInstances])}\n--- nginx ---\n${nginx?.logs().slice(-1_500) ?? ""}`;

  const track = (clients: ResilientMuxClient[]) => {
    openClients.push(...clients);
    return clients;
  };

  const stack = setupSuite(async () => {
    nginxBinary(); // a clear failure when nginx is not installed
    redis = await startRedis({ persistent: true });
    gatewayEnv = e2eGatewayEnv(redis.url, randomPrefix());
    instances = await createInstances(["gw-a", "gw-b", "gw-c"], gatewayEnv);
    await ensureRunning(instances);
    nginx = await startNginx({ upstreams: instances.map((instance) => instance.address) });
  }, 180_000);

  // A test that failed half-way leaves its clients reconnecting: stop them before the next test.
  afterEach(() => {
    for (const client of openClients.splice(0)) client.close();
  });

  afterAll(async () => {
    for (const client of openClients) client.close();
    const stops: Array<Promise<unknown>> = [...instances, ...extraInstances].map((instance) =>
      instance.stop().catch(() => {}),
    );
    await Promise.all(stops);
    await nginx?.stop().catch(() => {});
    await redis?.dispose().catch(() => {});
  }, 60_000);

  it("SIGKILL of an instance mid-stream: 20 clients over 50 sessions resume through nginx, exactly once; its runs end interrupted", async () => {
    stack.assertReady();
    await ensureRunning(instances);
    const base = nginx!.url;
    const runs = await startRuns(instances, 50, 150, "kill");
    const ids = runs.map((run) => run.id);
    const clients = track(makeClients(base, ids, 20, 5, 10, "kill"));
    expect(coverage(clients, ids)).toEqual([]);
    const running = startReading(clients, CLIENT_TIMEOUT_MS);

    // Mid-stream: every run has streamed a few tokens to someone, and none has ended.
    await waitUntil(
      () => everySessionStreaming(clients, ids, 6),
      30_000,
      () => clients.map((c) => c.describe()).join("\n"),
    );
    const victim = instances[0]!;
    const victimRuns = new Set(runs.filter((run) => run.instance === victim).map((run) => run.id));
    expect(clients.every((client) => [...victimRuns].every((id) => !client.ended.has(id)))).toBe(true);
    victim.kill("SIGKILL");
    expect((await victim.exited).signal).toBe("SIGKILL");

    await finishAll(clients, running).catch((error: Error) => {
      throw new Error(`${error.message}\n${failureContext()}`);
    });

    const stored = await readStoredSessions(base, ids);
    expect(storyProblems(stored)).toEqual([]);
    expect(deliveryProblems(clients, stored)).toEqual([]);
    for (const run of runs) {
      const session = stored.get(run.id) as StoredSession;
      const terminal = terminalOf(session);
      if (victimRuns.has(run.id)) {
        expect(terminal, run.id).toMatchObject({ type: "error", data: { code: "interrupted" } });
        expect(tokenCount(session.events), run.id).toBeLessThan(150);
      } else {
        expectDone(session, 150, run.instance.name);
      }
    }
    // The clients that were on the killed instance had to resume elsewhere.
    expect(clients.filter((client) => client.reconnects > 0).length).toBeGreaterThan(0);
  });

  it("SIGTERM of an instance: its clients move through nginx with nothing lost, its runs finish with done, it exits 0", async () => {
    stack.assertReady();
    await ensureRunning(instances);
    const base = nginx!.url;
    const runs = await startRuns(instances, 30, 150, "drain");
    const ids = runs.map((run) => run.id);
    const clients = track(makeClients(base, ids, 12, 5, 8, "drain"));
    expect(coverage(clients, ids)).toEqual([]);
    const running = startReading(clients, CLIENT_TIMEOUT_MS);

    await waitUntil(
      () => everySessionStreaming(clients, ids, 6),
      30_000,
      () => clients.map((c) => c.describe()).join("\n"),
    );
    const draining = instances[1]!;
    expect(await draining.ready()).toBe(200);
    draining.kill("SIGTERM");
    // Unready at once (503), or already unreachable once its listener closed.
    await waitUntil(
      async () => (await draining.ready()) !== 200,
      5_000,
      () => `${draining.name} still ready`,
      20,
    );

    await finishAll(clients, running).catch((error: Error) => {
      throw new Error(`${error.message}\n${failureContext()}`);
    });
    let exitTimer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      draining.exited,
      new Promise<never>((_, reject) => {
        exitTimer = setTimeout(
          () => reject(new Error(`${draining.name} did not exit within 45 s\n${failureContext()}`)),
          45_000,
        );
      }),
    ]).finally(() => clearTimeout(exitTimer));
    expect(exit, draining.logs().slice(-2_000)).toEqual({ code: 0, signal: null });

    const stored = await readStoredSessions(base, ids);
    expect(storyProblems(stored)).toEqual([]);
    expect(deliveryProblems(clients, stored)).toEqual([]);
    for (const run of runs) {
      const session = stored.get(run.id) as StoredSession;
      expectDone(session, 150, run.instance.name);
    }
    expect(clients.filter((client) => client.reconnects > 0).length).toBeGreaterThan(0);
  });

  it("Redis down for 5 s mid-stream: unready and refusing runs meanwhile; then exactly once, and overflowed runs end store_unavailable", async () => {
    stack.assertReady();
    await ensureRunning(instances);
    // A 4th instance with a small outage buffer: at 40 tokens/s, 20 events overflow within the outage.
    const [smallPort] = await freePorts(1);
    const small = new GatewayInstance("gw-small-buffer", smallPort!, {
      ...gatewayEnv,
      RUN_BUFFER_MAX_EVENTS: "20",
    });
    extraInstances.push(small);
    await small.start();
    const all = [...instances, small];
    const base = nginx!.url;

    // 3 runs on each instance, long enough (300 tokens = 7.5 s) to stream across the outage.
    const runs = await startRuns(all, 12, 300, "outage");
    const ids = runs.map((run) => run.id);
    const overflowing = new Set(runs.filter((run) => run.instance === small).map((run) => run.id));
    const clients = track(makeClients(base, ids, 6, 4, 6, "outage"));
    expect(coverage(clients, ids)).toEqual([]);
    const running = startReading(clients, CLIENT_TIMEOUT_MS);
    await waitUntil(
      () => everySessionStreaming(clients, ids, 6),
      30_000,
      () => clients.map((c) => c.describe()).join("\n"),
    );

    const redisServer = redis!;
    const outageStarted = Date.now();
    await redisServer.stop();

    // While Redis is gone: every instance is unready, and new runs are refused (not accepted and lost).
    await waitUntil(
      async () =>
        (await Promise.all(all.map((instance) => instance.ready()))).every((status) => status === 503),
      10_000,
      () => `not every instance turned unready`,
      50,
    );
    for (const instance of all) {
      const res = await postJson(`${instance.url}/api/v1/sessions`, {
        message: "during the outage [tokens=3]",
      });
      expect(res.status, `${instance.name}: ${res.text}`).toBe(503);
      expect(res.body.error.code).toBe("unavailable");
    }
    const viaNginx = await postJson(`${base}/api/v1/sessions`, { message: "during the outage [tokens=3]" });
    expect(viaNginx.status, viaNginx.text).toBe(503);
    expect(await Promise.all(all.map((instance) => instance.ready()))).toEqual([503, 503, 503, 503]);

    // At least OUTAGE_MS (longer when the checks above were slow on a busy machine).
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - outageStarted)));
    // One instance reconnects late (paused while Redis comes back, like a long GC pause or a slower
    // network path): every lease lapsed during the outage, and the others, back first, must not take
    // the late one's runs for crashed ones. Paused for less than a lease period, as its runs are alive.
    const late = instances[2]!;
    late.kill("SIGSTOP");
    try {
      await redisServer.start();
      await sleep(LATE_RECONNECT_MS);
    } finally {
      late.kill("SIGCONT");
    }

    await finishAll(clients, running).catch((error: Error) => {
      throw new Error(`${error.message}\n${failureContext()}`);
    });
    await waitUntil(
      async () =>
        (await Promise.all(all.map((instance) => instance.ready()))).every((status) => status === 200),
      15_000,
      () => "instances not ready again after Redis returned",
    );

    const stored = await readStoredSessions(base, ids);
    expect(storyProblems(stored)).toEqual([]);
    expect(deliveryProblems(clients, stored)).toEqual([]);
    for (const run of runs) {
      const session = stored.get(run.id) as StoredSession;
      const terminal = terminalOf(session);
      if (overflowing.has(run.id)) {
        expect(terminal, run.id).toMatchObject({ type: "error", data: { code: "store_unavailable" } });
        expect(tokenCount(session.events), run.id).toBeLessThan(300);
      } else {
        expectDone(session, 300, run.instance.name);
      }
    }
    // Open streams stayed open through the outage and resumed by themselves.
    for (const client of clients) expect(client.connections.length, client.describe()).toBe(1);
    // And the gateway takes new work again.
    const after = await postJson(`${base}/api/v1/sessions`, { message: "after the outage [tokens=3]" });
    expect(after.status, after.text).toBe(201);
    expect((await getJson(`${base}/api/v1/sessions/${after.body.id}`)).status).toBe(200);
    await small.stop();
  });
});
