/**
 * Exactly once through lost replies. Redis (AOF, fsync always) is stopped with SIGTERM and started again,
 * repeatedly, while producers append and runs stream: Redis runs the commands it has read, persists them
 * and exits before replying, and ioredis re-sends them after the reconnect. Nothing acknowledged may be
 * missing, nothing may be stored twice, every session ends once, and the lifecycle feed has one
 * `created` and one `ended` per session. Producers also retry with `Idempotency-Key`, on another instance.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedProvider } from "../../src/agent/simulated-provider.js";
import {
  getJson,
  logLines,
  postJson,
  type RedisServerHandle,
  startRedis,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const PRODUCERS = 24;
const RUNS = 8;
const RESTARTS = 4;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

interface Entry {
  id: string;
  type: string;
  data: Record<string, unknown>;
}

/**
 * The tokens the simulated model sends for a prompt (its text is seeded by the prompt): what a run of
 * that prompt must have stored, in order, all of it if it ended `done`, a prefix of it otherwise.
 */
async function upstreamTokens(prompt: string): Promise<string[]> {
  const model = createSimulatedProvider({ tokensPerSecond: 1_000_000, sleep: async () => {} });
  const tokens: string[] = [];
  const chunks = model.stream({
    model: "simulated",
    messages: [{ role: "user", content: prompt }],
    signal: new AbortController().signal,
  });
  for await (const chunk of chunks) if (chunk.kind === "token") tokens.push(chunk.content);
  return tokens;
}

/** A session's whole stored history, straight from Redis. */
async function history(redis: Redis, prefix: string, sessionId: string): Promise<Entry[]> {
  const entries = await redis.xrange(`${prefix}s:{${sessionId}}:events`, "-", "+");
  return entries.map(([id, fields]) => {
    const value = (name: string) => fields[fields.indexOf(name) + 1] ?? "";
    return { id, type: value("t"), data: JSON.parse(value("d")) as Record<string, unknown> };
  });
}

describe("exactly once through Redis restarts", () => {
  let redis: RedisServerHandle;
  let gateways: TestGateway[];
  let inspector: Redis;
  type LogLine = {
    level: number;
    msg: string;
    res?: { statusCode: number };
    err?: { stack?: string };
    failure?: { code: string };
  };
  /** Both instances' logs. */
  const logs = [logLines<LogLine>(), logLines<LogLine>()] as const;

  beforeAll(async () => {
    redis = await startRedis({ persistent: true });
    const first = await startTestGateway({
      redisUrl: redis.url,
      env: { SIMULATED_TOKENS_PER_SECOND: "200", LOG_LEVEL: "info" },
      logDestination: logs[0].sink,
    });
    const second = await startTestGateway({
      redisUrl: redis.url,
      prefix: first.prefix,
      env: { SIMULATED_TOKENS_PER_SECOND: "200", LOG_LEVEL: "info" },
      logDestination: logs[1].sink,
    });
    gateways = [first, second];
    inspector = new Redis(redis.url, { maxRetriesPerRequest: null });
    inspector.on("error", () => {});
  });
  afterAll(async () => {
    inspector?.disconnect();
    for (const gateway of gateways ?? []) await gateway.close();
    await redis?.dispose();
  });

  it("stores every acknowledged append once, ends every session once, and announces each once", async () => {
    const [gw] = gateways as [TestGateway, TestGateway];
    const prefix = gw.prefix;
    let producing = true;
    /** Per producer: the numbers acknowledged, and those sent but not acknowledged (stored 0 or 1 times). */
    const acknowledged = new Map<string, Set<number>>();
    const uncertain = new Map<string, Set<number>>();

    async function produce(sessionId: string, withKey: boolean): Promise<void> {
      acknowledged.set(sessionId, new Set());
      uncertain.set(sessionId, new Set());
      for (let n = 0; producing; n++) {
        const body = { events: [{ type: "token", data: { content: `${sessionId}#${n}` } }] };
        const headers: Record<string, string> = withKey ? { "idempotency-key": `${sessionId}-${n}` } : {};
        // With a key, a failed attempt is retried until it is acknowledged: it must then be stored once.
        for (;;) {
          const answer = await postJson(`${gw.url}/api/v1/sessions/${sessionId}/events`, body, headers).catch(
            () => null,
          );
          if (answer?.status === 202) {
            acknowledged.get(sessionId)!.add(n);
            uncertain.get(sessionId)!.delete(n);
            break;
          }
          uncertain.get(sessionId)!.add(n);
          if (!withKey || !producing) break;
          await sleep(50);
        }
        await sleep(5 + Math.random() * 20);
      }
      // Every producer ends its session, retrying until the end is acknowledged.
      for (;;) {
        const end = await postJson(
          `${gw.url}/api/v1/sessions/${sessionId}/events`,
          {
            events: [
              { type: "done", data: { session_id: sessionId, total_tokens: 0, finish_reason: "stop" } },
            ],
          },
          { "idempotency-key": `${sessionId}-end` },
        ).catch(() => null);
        if (end?.status === 202) return;
        await sleep(100);
      }
    }

    const producerIds = Array.from({ length: PRODUCERS }, (_, i) => `p${i}_${Date.now().toString(36)}`);
    const producers = producerIds.map((id, i) => produce(id, i % 2 === 0));

    // Runs that stream through the restarts.
    const runIds: string[] = [];
    const prompts = new Map<string, string>();
    for (let i = 0; i < RUNS; i++) {
      const prompt = `run ${i} [tokens=600]`;
      const started = await postJson(`${gw.url}/api/v1/sessions`, { message: prompt });
      expect(started.status, started.text).toBe(201);
      runIds.push(started.body.id as string);
      prompts.set(started.body.id as string, prompt);
    }

    for (let restart = 0; restart < RESTARTS; restart++) {
      await sleep(700);
      await redis.stop();
      await sleep(150);
      await redis.start();
      await waitUntil(async () => (await getJson(`${gw.url}/readyz`)).status === 200, 15_000, "readiness");
    }
    await sleep(500);
    producing = false;
    await Promise.all(producers);

    // Every run ends once; nothing is left running.
    await waitUntil(
      async () => {
        const states = await Promise.all(runIds.map((id) => getJson(`${gw.url}/api/v1/sessions/${id}`)));
        return states.every((state) => state.body?.status !== "running");
      },
      60_000,
      "every run to end",
    );
    for (const id of runIds) {
      const events = await history(inspector, prefix, id);
      const terminals = events.filter((e) => ["done", "error", "cancelled"].includes(e.type));
      expect(terminals, `run ${id}`).toHaveLength(1);
      expect(events.at(-1)?.type).toBe(terminals[0]?.type);
      const contents = events.filter((e) => e.type === "token").map((e) => e.data.content as string);
      // The model's tokens, in order: a batch stored twice would repeat some, a lost one leave a gap, and
      // either would shift the rest. A run cut short (error, interrupted) stored what came before the cut.
      const sent = await upstreamTokens(prompts.get(id)!);
      expect(sent).toHaveLength(600);
      if (terminals[0]?.type === "done") expect(contents, `run ${id}`).toEqual(sent);
      else expect(contents, `run ${id} (${terminals[0]?.type})`).toEqual(sent.slice(0, contents.length));
    }

    let duplicates = 0;
    let stored = 0;
    for (const id of producerIds) {
      const events = await history(inspector, prefix, id);
      const numbers = events
        .filter((e) => e.type === "token")
        .map((e) => Number((e.data.content as string).split("#")[1]));
      duplicates += numbers.length - new Set(numbers).size;
      stored += numbers.length;
      for (const n of acknowledged.get(id)!) expect(numbers, `${id} #${n} acknowledged`).toContain(n);
      for (const n of numbers) {
        expect(acknowledged.get(id)!.has(n) || uncertain.get(id)!.has(n), `${id} #${n} was sent`).toBe(true);
      }
      expect(
        events.filter((e) => e.type === "done"),
        id,
      ).toHaveLength(1);
      // Numbers stay in the order they were sent (one producer waits for each answer).
      expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    }
    expect(duplicates, "events stored twice").toBe(0);
    expect(stored).toBeGreaterThan(PRODUCERS * 20);

    // The lifecycle feed: one created and one ended per session.
    const feed = await history(inspector, prefix, "@sessions");
    for (const id of [...producerIds, ...runIds]) {
      const about = feed.filter((e) => e.data.id === id).map((e) => e.type);
      expect(about, `feed entries of ${id}`).toEqual(["created", "ended"]);
    }

    // Refused during the outages, on either instance: logged once each, at warn, without a stack trace;
    // an expected 503 is never a "request failed" (error, with a stack), whether its body was read or not.
    const lines = [...logs[0].lines, ...logs[1].lines];
    const refused = lines.filter((line) => line.res?.statusCode === 503);
    expect(refused.length).toBeGreaterThan(0);
    for (const line of refused) {
      expect(line.level, JSON.stringify(line)).toBe(40);
      expect(["unavailable", "draining"], JSON.stringify(line)).toContain(line.failure?.code);
      expect(line.err?.stack ?? "", JSON.stringify(line)).toBe("");
    }
    expect(lines.filter((line) => line.msg === "request failed")).toEqual([]);
    expect(lines.filter((line) => line.level >= 50)).toEqual([]);
  }, 120_000);

  it("a producer's retry with the same Idempotency-Key, on another instance, answers the first 202 and writes nothing", async () => {
    const [first, second] = gateways as [TestGateway, TestGateway];
    const id = `idem_${Date.now().toString(36)}`;
    const body = { events: [{ type: "token", data: { content: "once" } }] };
    const headers = { "idempotency-key": "order-42" };
    const answer = await postJson(`${first.url}/api/v1/sessions/${id}/events`, body, headers);
    expect(answer.status, answer.text).toBe(202);
    expect(answer.headers.get("idempotent-replayed")).toBeNull();
    const retry = await postJson(`${second.url}/api/v1/sessions/${id}/events`, body, headers);
    expect(retry.status).toBe(202);
    expect(retry.body).toEqual(answer.body);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    // The Express path (chunked body) answers the same.
    const chunked = await fetch(`${second.url}/api/v1/sessions/${id}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: new Blob([JSON.stringify(body)]).stream(),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(202);
    expect(await chunked.json()).toEqual(answer.body);
    expect(await history(inspector, first.prefix, id)).toHaveLength(1);

    // The same key for another body is refused, and writes nothing.
    const reused = await postJson(
      `${second.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content: "other" } }] },
      headers,
    );
    expect(reused.status).toBe(422);
    expect(reused.body.error.code).toBe("idempotency_key_reused");
    // A malformed key is a 400 naming the header.
    const bad = await postJson(`${first.url}/api/v1/sessions/${id}/events`, body, {
      "idempotency-key": "a b",
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("invalid_idempotency_key");
    // A new key is a new append; the same key on another session is another request.
    expect(
      (await postJson(`${first.url}/api/v1/sessions/${id}/events`, body, { "idempotency-key": "k2" })).status,
    ).toBe(202);
    const elsewhere = await postJson(`${first.url}/api/v1/sessions/${id}x/events`, body, headers);
    expect(elsewhere.status).toBe(202);
    expect(elsewhere.headers.get("idempotent-replayed")).toBeNull();
    expect(await history(inspector, first.prefix, id)).toHaveLength(2);
  });
  it("a producer's retry with the same Idempotency-Key, on the other instance after a Redis restart, is applied once", async () => {
    const [first, second] = gateways as [TestGateway, TestGateway];
    const ready = async (gateway: TestGateway) =>
      waitUntil(async () => (await getJson(`${gateway.url}/readyz`)).status === 200, 15_000, "readiness");
    const id = `restart_${Date.now().toString(36)}`;
    const send = (gateway: TestGateway, content: string, key: string) =>
      postJson(
        `${gateway.url}/api/v1/sessions/${id}/events`,
        { events: [{ type: "token", data: { content } }] },
        { "idempotency-key": key },
      );

    // Acknowledged, then Redis restarts (its data kept): the retry elsewhere answers the first 202.
    const answer = await send(first, "one", "k-one");
    expect(answer.status, answer.text).toBe(202);
    await redis.restart();
    await ready(first);
    await ready(second);
    const retry = await send(second, "one", "k-one");
    expect(retry.status, retry.text).toBe(202);
    expect(retry.body).toEqual(answer.body);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");

    // Its answer lost: Redis stops answering (the append is on its way, and runs once Redis goes on),
    // the request gives up (503), Redis restarts, and the producer retries on the other instance.
    process.kill(redis.pid, "SIGSTOP");
    let lost: Awaited<ReturnType<typeof send>>;
    try {
      lost = await send(first, "two", "k-two");
    } finally {
      process.kill(redis.pid, "SIGCONT");
    }
    expect(lost.status, lost.text).toBe(503);
    await waitUntil(
      async () => (await history(inspector, first.prefix, id)).length === 2,
      15_000,
      "the append",
    );
    await redis.restart();
    await ready(first);
    await ready(second);
    const after = await send(second, "two", "k-two");
    expect(after.status, after.text).toBe(202);
    const stored = await history(inspector, first.prefix, id);
    expect(stored.map((event) => event.data.content)).toEqual(["one", "two"]);
    expect(after.body).toEqual({ ids: [stored[1]!.id] });
    expect(after.headers.get("idempotent-replayed")).toBe("true");
  }, 60_000);
});
