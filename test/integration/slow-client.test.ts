/**
 * Slow readers: a gateway process feeding paused clients keeps its memory bounded (it stops writing when
 * a socket is full and catches up from Redis later, instead of buffering the backlog), every client
 * gets every token exactly once and in order when it reads again, and a client stuck past
 * SLOW_CLIENT_TIMEOUT_MS is closed and resumes by id.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, inject, it } from "vitest";
import {
  closedWithin,
  type GatewayProcess,
  openSse,
  postJson,
  randomPrefix,
  request,
  type SseConnection,
  type SseEvent,
  startGatewayProcess,
} from "../helpers/index.js";

const TOTAL_TOKENS = 20_000;
const BATCH = 500;
const CLIENTS = 10;
const FILLER = "x".repeat(1_000);
const STREAM_TIMEOUT_MS = 60_000;

/** Token i: its index up front (order is checkable), ~1 KB in all. */
const tokenText = (i: number) => `${String(i).padStart(6, "0")}:${FILLER}`;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function startGateway(env: Record<string, string>): Promise<GatewayProcess> {
  const gateway = await startGatewayProcess({
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: randomPrefix(),
    LOG_LEVEL: "warn",
    MAX_EVENTS_PER_SESSION: "50000",
    // The producer posts far faster than a model would; this test is about readers, not publish limits.
    LIMIT_PUBLISH_EVENTS_PER_SECOND: "1000000",
    // Every token arrives as its own event, so order and exactly-once are checked event by event.
    MERGE_TOKENS_WHEN_BEHIND: "false",
    ...env,
  });
  cleanups.push(() => gateway.stop());
  return gateway;
}

async function appendTokens(url: string, sessionId: string, from: number, to: number): Promise<void> {
  const events = [];
  for (let i = from; i < to; i++) events.push({ type: "token", data: { content: tokenText(i) } });
  const res = await postJson(`${url}/api/v1/sessions/${sessionId}/events`, { events });
  expect(res.status, res.text).toBe(202);
  expect(res.body.ids).toHaveLength(to - from);
}

async function appendDone(url: string, sessionId: string, total: number): Promise<void> {
  const res = await postJson(`${url}/api/v1/sessions/${sessionId}/events`, {
    events: [{ type: "done", data: { session_id: sessionId, total_tokens: total, finish_reason: "stop" } }],
  });
  expect(res.status, res.text).toBe(202);
}

/** Token indexes as received, checked to be exactly `from..to-1` in order; returns a description of the first problem. */
function checkTokens(events: SseEvent[], from: number, to: number): string | null {
  const tokens = events.filter((e) => e.event === "token");
  if (tokens.length !== to - from) return `expected ${to - from} tokens from ${from}, got ${tokens.length}`;
  for (let k = 0; k < tokens.length; k++) {
    const content = (JSON.parse(tokens[k]!.data) as { content: string }).content;
    if (content !== tokenText(from + k))
      return `token #${k}: expected index ${from + k}, got "${content.slice(0, 12)}…"`;
  }
  return null;
}

async function slowCloses(url: string): Promise<number> {
  const res = await request("GET", `${url}/metrics`);
  const match = /^sse_slow_client_closes_total (\d+)$/m.exec(res.text);
  if (!match) throw new Error("sse_slow_client_closes_total missing from /metrics");
  return Number(match[1]);
}

describe("slow clients", () => {
  it("paused readers of a 20 MB session keep gateway memory bounded, then get every token in order", async () => {
    // The readers' instance (measured) and the producer's instance, on one Redis: the measured process
    // holds only what fan-out to its readers costs, not the parsing of 20 MB of request bodies. It still
    // receives every append notice (20 MB of pub/sub text in all, whatever the number of readers), a
    // fixed cost of a few tens of MB of heap; what must NOT grow is a per-client backlog, hence 10
    // clients: unbounded buffering would cost ~200 MB.
    const prefix = randomPrefix();
    const gw = await startGateway({ SLOW_CLIENT_TIMEOUT_MS: "600000", REDIS_KEY_PREFIX: prefix });
    const producer = await startGateway({ REDIS_KEY_PREFIX: prefix });
    const sessionId = `slow-${randomPrefix().slice(2, 10)}`;

    await appendTokens(producer.url, sessionId, 0, 1);
    const clients: SseConnection[] = [];
    for (let c = 0; c < CLIENTS; c++) {
      const client = await openSse(`${gw.url}/api/v1/sessions/${sessionId}/stream`);
      cleanups.push(() => client.close());
      expect(client.status).toBe(200);
      clients.push(client);
    }
    for (const client of clients) await client.waitForEvent("token", 10_000);
    for (const client of clients) client.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const baseline = rssBytes(gw.pid);

    let peak = baseline;
    for (let from = 1; from < TOTAL_TOKENS; from += BATCH) {
      await appendTokens(producer.url, sessionId, from, Math.min(TOTAL_TOKENS, from + BATCH));
      peak = Math.max(peak, rssBytes(gw.pid));
    }
    await appendDone(producer.url, sessionId, TOTAL_TOKENS);
    // Let the gateway do whatever it does with the backlog, then sample again.
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      peak = Math.max(peak, rssBytes(gw.pid));
    }

    const payloadBytes = TOTAL_TOKENS * Buffer.byteLength(JSON.stringify({ content: tokenText(0) }));
    // What the paused clients had parsed is what they do not owe; everything else is still to be sent.
    const owedBytes = clients.reduce((sum, client) => {
      const received = client.events.filter((e) => e.event === "token").length;
      return sum + payloadBytes * ((TOTAL_TOKENS - received) / TOTAL_TOKENS);
    }, 0);
    const growth = peak - baseline;
    console.info(
      `slow-client RSS: baseline ${mb(baseline)}, peak ${mb(peak)}, growth ${mb(growth)}; ` +
        `paused clients owed ${mb(owedBytes)} (${CLIENTS} × ${mb(payloadBytes)})`,
    );
    for (const client of clients) expect(client.isClosed()).toBe(false);
    expect(owedBytes).toBeGreaterThan(0.9 * CLIENTS * payloadBytes);
    expect(growth).toBeLessThan(0.6 * owedBytes);

    for (const client of clients) client.resume();
    await Promise.all(clients.map((client) => closedWithin(client, STREAM_TIMEOUT_MS)));
    for (const [c, client] of clients.entries()) {
      expect(client.error(), `client ${c}`).toBeUndefined();
      expect(checkTokens(client.events, 0, TOTAL_TOKENS), `client ${c}`).toBeNull();
      const terminals = client.events.filter((e) => ["done", "error", "cancelled"].includes(e.event));
      expect(
        terminals.map((e) => e.event),
        `client ${c}`,
      ).toEqual(["done"]);
      expect(client.events[client.events.length - 1]!.event).toBe("done");
      // Positions strictly grow: nothing twice.
      const ids = client.events.map((e) => e.id!);
      for (let k = 1; k < ids.length; k++) {
        const [am, as] = ids[k - 1]!.split("-").map(Number) as [number, number];
        const [bm, bs] = ids[k]!.split("-").map(Number) as [number, number];
        if (!(am < bm || (am === bm && as < bs)))
          throw new Error(`client ${c}: id ${ids[k]} after ${ids[k - 1]}`);
      }
    }
  }, 90_000);

  it("a client stuck past SLOW_CLIENT_TIMEOUT_MS is closed, counted, and resumes by id", async () => {
    const gw = await startGateway({ SLOW_CLIENT_TIMEOUT_MS: "1000" });
    const sessionId = `stuck-${randomPrefix().slice(2, 10)}`;
    const before = await slowCloses(gw.url);

    await appendTokens(gw.url, sessionId, 0, 1);
    const client = await openSse(`${gw.url}/api/v1/sessions/${sessionId}/stream`);
    cleanups.push(() => client.close());
    await client.waitForEvent("token", 10_000);
    client.pause();

    // Push until the socket is full long enough for the gateway to give up on it (kernel buffers
    // absorb a few MB first).
    let pushed = 1;
    const deadline = Date.now() + 20_000;
    while ((await slowCloses(gw.url)) === before) {
      if (Date.now() > deadline) throw new Error(`no slow-client close after ${pushed} tokens`);
      if (pushed < 40_000) {
        await appendTokens(gw.url, sessionId, pushed, pushed + BATCH);
        pushed += BATCH;
      } else {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(await slowCloses(gw.url)).toBe(before + 1);
    await appendTokens(gw.url, sessionId, pushed, pushed + BATCH);
    pushed += BATCH;
    await appendDone(gw.url, sessionId, pushed);

    // Reading again, the client gets what was already on its way, then the end of the connection.
    client.resume();
    await closedWithin(client, STREAM_TIMEOUT_MS);
    const firstPart = client.events.filter((e) => e.event === "token").length;
    expect(firstPart).toBeLessThan(pushed);
    expect(client.events.some((e) => e.event === "done")).toBe(false);
    expect(checkTokens(client.events, 0, firstPart)).toBeNull();
    const lastId = client.lastId();
    expect(lastId).toBeDefined();

    const resumed = await openSse(`${gw.url}/api/v1/sessions/${sessionId}/stream`, { lastEventId: lastId! });
    cleanups.push(() => resumed.close());
    expect(resumed.status).toBe(200);
    await closedWithin(resumed, STREAM_TIMEOUT_MS);
    expect(checkTokens(resumed.events, firstPart, pushed)).toBeNull();
    expect(resumed.events.filter((e) => e.event === "done")).toHaveLength(1);
    expect(resumed.events[resumed.events.length - 1]!.event).toBe("done");
    console.info(`slow-client close: cut after ${firstPart} of ${pushed} tokens, the rest resumed by id`);
  }, 60_000);
});
