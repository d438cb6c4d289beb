/**
 * Durable acknowledgements (REDIS_WAIT_REPLICAS=1) on a real Sentinel set of its own (a primary, one
 * replica, 3 Sentinels): an append is answered once the replica holds it, and its events reach
 * readers only then. With the replica stopped (SIGSTOP), a producer's append is answered 503
 * unavailable, the event is kept but no reader sees it (neither live nor by reading the store); once
 * the replica is back, the event is delivered, and a retry with the same Idempotency-Key answers the
 * first positions. A confirmed position lost in a failover holds no reader back.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeyScheme } from "../../src/store/keys.js";
import {
  openSse,
  postJson,
  type SseConnection,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";
import { type SentinelSetHandle, startSentinelSet } from "../helpers/redis-sentinel.js";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe("durable acknowledgements (REDIS_WAIT_REPLICAS=1, behind Sentinels)", () => {
  let sentinel: SentinelSetHandle;
  let gateway: TestGateway;
  let replica: Redis;
  const streams: SseConnection[] = [];

  beforeAll(async () => {
    sentinel = await startSentinelSet({ replicas: 1 });
    gateway = await startTestGateway({
      env: {
        REDIS_SENTINELS: sentinel.sentinelsEnv,
        REDIS_SENTINEL_NAME: sentinel.name,
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "300",
      },
    });
    replica = new Redis({ host: "127.0.0.1", port: sentinel.nodes[1]!.port });
  }, 60_000);

  afterAll(async () => {
    for (const stream of streams) stream.close();
    replica?.disconnect();
    await gateway?.close();
    await sentinel?.stop();
  });

  const append = (id: string, content: string, key?: string) =>
    postJson(
      `${gateway.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content } }] },
      key ? { "idempotency-key": key } : {},
    );

  it("answers an append once the replica holds it, and readers get it live", async () => {
    const id = `durable_${Date.now().toString(36)}`;
    const first = await append(id, "one");
    expect(first.status, first.text).toBe(202);
    const stream = await openSse(`${gateway.url}/api/v1/sessions/${id}/stream`);
    streams.push(stream);
    await stream.waitFor((events) => events.some((event) => event.data.includes('"one"')));
    const second = await append(id, "two");
    expect(second.status, second.text).toBe(202);
    await stream.waitFor((events) => events.some((event) => event.data.includes('"two"')));
    // Acknowledged means the replica holds it.
    const keys = createKeyScheme(gateway.prefix);
    expect(await replica.xlen(keys.events(id))).toBe(2);
    expect(gateway.gateway.context.readiness().connections.map((connection) => connection.name)).toEqual([
      "command",
      "subscriber",
      "appender",
    ]);
  });

  it("a confirmation lost after the replicas held the batch (a failover right after its WAIT) holds no reader back", async () => {
    const id = `lostconf_${Date.now().toString(36)}`;
    expect((await append(id, "first")).status).toBe(202);
    const second = await append(id, "second");
    expect(second.status).toBe(202);
    // As on a new primary that got the batch but not the confirmed position written after its WAIT.
    const keys = createKeyScheme(gateway.prefix);
    const primary = new Redis({ host: "127.0.0.1", port: await sentinel.primaryPort() });
    try {
      const [first] = (await primary.xrange(keys.events(id), "-", "+", "COUNT", 1)).map(([entry]) => entry);
      await primary.hset(keys.meta(id), "conf", first!);
      // A new reader gets both: the held-back read confirms the position again (a write and a WAIT).
      const stream = await openSse(`${gateway.url}/api/v1/sessions/${id}/stream`);
      streams.push(stream);
      await stream.waitFor((events) => events.some((event) => event.data.includes('"second"')));
      expect(await primary.hget(keys.meta(id), "conf")).toBe(second.body.ids[0]);
    } finally {
      primary.disconnect();
    }
  });

  it("with the replica stopped: 503, the event kept unseen; once it is back it is delivered, and a retry with the same key answers the first positions", async () => {
    const id = `unconfirmed_${Date.now().toString(36)}`;
    expect((await append(id, "before")).status).toBe(202);
    const stream = await openSse(`${gateway.url}/api/v1/sessions/${id}/stream`);
    streams.push(stream);
    await stream.waitFor((events) => events.some((event) => event.data.includes('"before"')));

    process.kill(sentinel.nodes[1]!.pid, "SIGSTOP");
    let refused: Awaited<ReturnType<typeof append>>;
    try {
      refused = await append(id, "held", "order-1");
      // Kept on the primary, but not shown: a fresh read stops at what the replica confirmed.
      const read = await gateway.gateway.context.store.read(id, null, 100);
      expect(read.events.map((event) => event.data)).toEqual(['{"content":"before"}']);
      // And no notice went out (the live reader has nothing new).
      await sleep(300);
      expect(stream.events.some((event) => event.data.includes('"held"'))).toBe(false);
    } finally {
      process.kill(sentinel.nodes[1]!.pid, "SIGCONT");
    }
    expect(refused.status, refused.text).toBe(503);
    expect(refused.body.error.code).toBe("unavailable");
    expect(refused.body.error.message).toContain("REDIS_WAIT_REPLICAS");
    expect(refused.headers.get("retry-after")).toBe("1");

    // The replica catches up: the kept batch is announced without waiting for a retry (a producer may
    // give up; a sweeper's terminal event is never sent again), and the reader gets it once.
    await stream.waitFor((events) => events.some((event) => event.data.includes('"held"')), 15_000);
    // The retry answers the first append's positions, and delivers nothing twice.
    let retry = await append(id, "held", "order-1");
    for (let attempt = 0; retry.status === 503 && attempt < 50; attempt++) {
      await sleep(200);
      retry = await append(id, "held", "order-1");
    }
    expect(retry.status, retry.text).toBe(202);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    await stream.waitFor((events) => events.some((event) => event.data.includes('"held"')));
    const contents = stream.events
      .filter((event) => event.event === "token")
      .map((event) => (JSON.parse(event.data) as { content: string }).content);
    expect(contents).toEqual(["before", "held"]);
    const metrics = await fetch(`${gateway.url}/metrics`).then((res) => res.text());
    expect(metrics).toMatch(/sse_redis_wait_seconds_count\{outcome="short"\} [1-9]/);
  });
});
