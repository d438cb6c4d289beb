/**
 * Redis going away and coming back (a real redis-server of this test, stopped and restarted on the same
 * port; it keeps no data). While it is gone: /readyz 503, new runs and appends 503 JSON, open streams
 * stay open on heartbeats. After it returns: ready again, new runs work, and an already-open
 * multiplexed `@sessions` connection sees them (its notice channels were re-subscribed).
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closedWithin,
  getJson,
  openSse,
  postJson,
  type RedisServerHandle,
  type SseConnection,
  startRedis,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const readyStatus = async (url: string) => (await getJson(`${url}/readyz`)).status;

/** A GET's answer; the request is given up (and the test fails) if none comes within 10 s. */
async function answerWithin(url: string): Promise<{ status: number; headers: Headers }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return { status: res.status, headers: res.headers };
}

describe("Redis outage", () => {
  let redis: RedisServerHandle;
  let gw: TestGateway;
  const streams: SseConnection[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    gw = await startTestGateway({ redisUrl: redis.url, env: { HEARTBEAT_MS: "200" } });
  });
  afterAll(async () => {
    for (const stream of streams) stream.close();
    await gw?.close();
    await redis?.stop();
  });

  it("is unready and refuses work while Redis is down, keeps streams open, and recovers", async () => {
    expect(await readyStatus(gw.url)).toBe(200);

    // Before the outage: a lifecycle feed connection that has seen one session, and a session stream.
    const feed = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`);
    streams.push(feed);
    expect(feed.status).toBe(200);
    await feed.waitForEvent("connected", 5_000);
    const before = await postJson(`${gw.url}/api/v1/sessions/outage-before/events`, {
      events: [{ type: "token", data: { content: "hello" } }],
    });
    expect(before.status, before.text).toBe(202);
    const created = (id: string) => (e: { event: string; data: string }) =>
      e.event === "@sessions:created" && JSON.parse(e.data).id === id;
    await feed.waitForEvent(created("outage-before"), 5_000);
    const single = await openSse(`${gw.url}/api/v1/sessions/outage-before/stream`);
    streams.push(single);
    await single.waitForEvent("token", 5_000);

    // ---- the outage ----
    await redis.stop();
    await waitUntil(async () => (await readyStatus(gw.url)) === 503, 10_000, "/readyz to turn 503");
    const ready = await getJson(`${gw.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body.error.code).toEqual(expect.any(String));

    const run = await postJson(`${gw.url}/api/v1/sessions`, { message: "during the outage [tokens=3]" });
    expect(run.status).toBe(503);
    expect(run.headers.get("content-type")).toMatch(/^application\/json/);
    expect(run.body.error).toMatchObject({ code: "unavailable", message: expect.any(String) });

    const append = await postJson(`${gw.url}/api/v1/sessions/outage-during/events`, {
      events: [{ type: "token", data: { content: "lost?" } }],
    });
    expect(append.status).toBe(503);
    expect(append.headers.get("content-type")).toMatch(/^application\/json/);
    expect(append.body.error).toMatchObject({ code: "unavailable", message: expect.any(String) });

    const agent = await postJson(`${gw.url}/api/v1/agent/stream`, { message: "during [tokens=3]" });
    expect(agent.status).toBe(503);
    expect(agent.body.error.code).toBe("unavailable");

    // Reads too: every route that needs the store answers 503 with Retry-After, none waits for Redis.
    for (const path of [
      "/api/v1/sessions/outage-before",
      "/api/v1/sessions/outage-before/stream",
      "/api/v1/stream?sessions=outage-before,@sessions",
      "/api/v1/stream?subscription=sub_whatever",
      "/api/v1/subscriptions/sub_whatever",
      "/v1/responses/resp_outage-before",
      "/v1/chat/completions/outage-before/stream",
    ]) {
      const read = await answerWithin(`${gw.url}${path}`);
      expect({ path, status: read.status }).toEqual({ path, status: 503 });
      expect(read.headers.get("retry-after")).toMatch(/^\d+$/);
    }

    // Open streams stay open and keep beating.
    const feedPings = feed.comments.filter((c) => c === "ping").length;
    const singlePings = single.comments.filter((c) => c === "ping").length;
    await feed.waitFor(() => feed.comments.filter((c) => c === "ping").length >= feedPings + 3, 5_000);
    await single.waitFor(() => single.comments.filter((c) => c === "ping").length >= singlePings + 3, 5_000);
    expect(feed.isClosed()).toBe(false);
    expect(single.isClosed()).toBe(false);
    expect(await readyStatus(gw.url)).toBe(503);

    // ---- Redis returns (empty: this server keeps no data) ----
    await redis.restart();
    await waitUntil(async () => (await readyStatus(gw.url)) === 200, 15_000, "/readyz to turn 200 again");
    expect(feed.isClosed()).toBe(false);
    // Let the reconnect settle, so that what follows travels on live notices, not on a catch-up read.
    await new Promise((resolve) => setTimeout(resolve, 300));

    const after = await postJson(`${gw.url}/api/v1/sessions`, { message: "after the outage [tokens=5]" });
    expect(after.status, after.text).toBe(201);
    const afterId = after.body.id as string;
    // The feed connection opened before the outage announces the new session: it was re-subscribed.
    const announced = await feed.waitForEvent(created(afterId), 10_000);
    expect(announced.id).toBeDefined();
    await feed.waitFor(
      (events) => events.some((e) => e.event === "@sessions:ended" && JSON.parse(e.data).id === afterId),
      10_000,
    );

    const stream = await openSse(`${gw.url}${after.body.streamUrl}`);
    streams.push(stream);
    await closedWithin(stream, 10_000);
    expect(stream.events.map((e) => e.event)).toEqual(["start", ...Array(5).fill("token"), "usage", "done"]);

    // Outside producers can append again, and the feed sees that session too.
    const appended = await postJson(`${gw.url}/api/v1/sessions/outage-after/events`, {
      events: [{ type: "token", data: { content: "back" } }],
    });
    expect(appended.status, appended.text).toBe(202);
    await feed.waitForEvent(created("outage-after"), 10_000);
    expect(feed.isClosed()).toBe(false);
  }, 60_000);

  it("bounds what a read waits for while Redis is connected but does not answer (STORE_TIMEOUT_MS)", async () => {
    const slow = await startTestGateway({ redisUrl: redis.url, env: { STORE_TIMEOUT_MS: "300" } });
    const admin = new Redis(redis.url);
    try {
      const seeded = await postJson(`${slow.url}/api/v1/sessions/paused-one/events`, {
        events: [{ type: "token", data: { content: "x" } }],
      });
      expect(seeded.status, seeded.text).toBe(202);
      // Every client's commands wait (the connections stay up: the backend still says ready).
      await admin.call("CLIENT", "PAUSE", "4000", "ALL");
      for (const path of [
        "/api/v1/sessions/paused-one",
        "/api/v1/sessions/paused-one/stream",
        "/api/v1/stream?sessions=paused-one",
      ]) {
        const read = await answerWithin(`${slow.url}${path}`);
        expect({ path, status: read.status }).toEqual({ path, status: 503 });
        expect(read.headers.get("retry-after")).toMatch(/^\d+$/);
      }
    } finally {
      await admin.call("CLIENT", "UNPAUSE").catch(() => {});
      admin.disconnect();
      await slow.close();
    }
    const read = await getJson(`${gw.url}/api/v1/sessions/outage-after`);
    expect(read.status).toBe(200);
  });
});
