/**
 * Catch-up with read-ahead: while a reader is behind, its connection's catch-up reads its next batch
 * before the current one is written. A backlog of many batches still arrives complete, in order and
 * once, live events appended during the catch-up follow it without a gap or a duplicate, and a
 * connection whose socket is full holds at most one batch read ahead per reader. Against every store
 * (memory, one Redis, a Redis Cluster, where one connection's sessions live on several shards).
 */
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, describe, expect, inject, it } from "vitest";
import { createClusterBackend } from "../../src/backend/cluster.js";
import { Hub } from "../../src/hub/hub.js";
import { createMetrics } from "../../src/metrics.js";
import { CursorTracker } from "../../src/mux/cursor.js";
import { StreamConnection } from "../../src/mux/stream-connection.js";
import type { SseWriter } from "../../src/sse/writer.js";
import { createKeyScheme } from "../../src/store/keys.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createMemoryPubSub } from "../../src/store/pubsub.js";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { createRedisStore } from "../../src/store/redis-store.js";
import type { RetentionOptions } from "../../src/store/session-fields.js";
import type { StreamStore } from "../../src/store/types.js";
import { clusterSeeds } from "../contract/backends.js";
import {
  closedWithin,
  openSse,
  postJson,
  randomPrefix,
  STORE_KINDS,
  startTestGateway,
  storeOptions,
} from "../helpers/index.js";

const BATCH = 20;
const RETENTION: RetentionOptions = {
  maxEventsPerSession: 10_000,
  lifecycleMaxEvents: 10_000,
  endedSessionTtlSeconds: 86_400,
  idleSessionTtlSeconds: 86_400,
  requestRecordTtlSeconds: 600,
};

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function makeStore(kind: (typeof STORE_KINDS)[number]): Promise<StreamStore> {
  const keyPrefix = randomPrefix();
  const keys = createKeyScheme(keyPrefix);
  if (kind === "memory") {
    const store = createMemoryStore({ pubsub: createMemoryPubSub(), keys, retention: RETENTION });
    cleanups.push(() => store.close());
    return store;
  }
  if (kind === "redis-cluster") {
    const backend = await createClusterBackend({
      keyPrefix,
      retention: RETENTION,
      subscriptionLimits: { maxSessions: 100, ttlSeconds: 3_600 },
      cluster: { nodes: clusterSeeds(inject("redisClusterNodes")) },
      instanceId: "catch-up",
      logger: pino({ level: "silent" }),
    });
    cleanups.push(() => backend.close());
    return backend.store;
  }
  const command = new Redis(inject("redisUrl"), { lazyConnect: true });
  const subscriber = new Redis(inject("redisUrl"), { lazyConnect: true });
  await Promise.all([command.connect(), subscriber.connect()]);
  const store = createRedisStore({
    redis: command,
    pubsub: createRedisPubSub(subscriber, command),
    keys,
    retention: RETENTION,
  });
  cleanups.push(async () => {
    await store.close();
    subscriber.disconnect();
    await command.quit();
  });
  return store;
}

/** The store, counting reads per session and keeping the ones in flight (to wait for them). */
function countingStore(store: StreamStore) {
  const reads = new Map<string, number>();
  const inFlight = new Set<Promise<unknown>>();
  const counted: StreamStore = {
    ...store,
    read(sessionId, after, count) {
      reads.set(sessionId, (reads.get(sessionId) ?? 0) + 1);
      const result = store.read(sessionId, after, count);
      inFlight.add(result);
      void result.finally(() => inFlight.delete(result)).catch(() => {});
      return result;
    },
  };
  /** Resolves once no read is in flight and every continuation of the last one has run. */
  async function settle(): Promise<void> {
    do {
      await Promise.allSettled([...inFlight]);
      await new Promise((resolve) => setImmediate(resolve));
    } while (inFlight.size > 0);
  }
  return { store: counted, reads, settle };
}

/**
 * Stands in for the SSE writer: records frames, and (while `fillOnSend`) reports the socket full after
 * every write, as a client that stopped reading makes it, until the test drains it.
 */
class FakeWriter {
  writable = true;
  fillOnSend = true;
  ended = false;
  readonly sends: string[] = [];
  get text(): string {
    return this.sends.join("");
  }
  send(frames: string): void {
    this.sends.push(frames);
    if (this.fillOnSend) this.writable = false;
  }
  end(): void {
    this.ended = true;
    this.writable = false;
  }
}

interface Frame {
  id: string;
  event: string;
  content: string;
}

function framesOf(text: string): Frame[] {
  const frames: Frame[] = [];
  for (const block of text.split("\n\n")) {
    const fields = new Map<string, string>();
    for (const line of block.split("\n")) {
      const colon = line.indexOf(": ");
      if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 2));
    }
    if (!fields.has("event")) continue;
    const data = JSON.parse(fields.get("data") ?? "{}") as { content?: string };
    frames.push({ id: fields.get("id") ?? "", event: fields.get("event")!, content: data.content ?? "" });
  }
  return frames;
}

const tokens = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, k) => ({ type: "token", data: { content: `t${from + k}` } }));
const contents = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => `t${from + k}`);

/** A multiplexed connection on its own hub over `store`, reading `sessions` from their beginning. */
async function openMux(
  store: StreamStore,
  sessions: readonly string[],
  options: { closeWhenAllEnded: boolean; maxConcurrentReads: number },
) {
  const metrics = createMetrics({ defaultMetrics: false });
  const logger = pino({ level: "silent" });
  const hub = new Hub(store.notifier, metrics, logger);
  const writer = new FakeWriter();
  const connection = new StreamConnection(
    { hub, store, writer: writer as unknown as SseWriter, metrics, logger, tracker: new CursorTracker() },
    { framing: "mux", mergeTokensWhenBehind: false, catchUpBatch: BATCH, retryReadAfterMs: 50, ...options },
  );
  for (const [index, id] of sessions.entries()) {
    await connection.addSession(id, index, { kind: "none" }, await store.getSession(id));
  }
  connection.sessionsAdded();
  return { connection, writer };
}

describe.each(STORE_KINDS)("catch-up read-ahead (%s store)", (kind) => {
  it("a paused connection holds at most one batch read ahead per reader; the backlog and the live tail then arrive once, in order", async () => {
    const counting = countingStore(await makeStore(kind));
    const { store, reads, settle } = counting;
    const sessions = [`a-${randomPrefix().slice(2, 10)}`, `b-${randomPrefix().slice(2, 10)}`];
    const backlog = 7 * BATCH + 3;
    for (const id of sessions) {
      await store.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
      for (let i = 0; i < backlog; i += BATCH)
        await store.append(id, tokens(i, Math.min(i + BATCH, backlog)));
    }

    const { connection, writer } = await openMux(store, sessions, {
      closeWhenAllEnded: true,
      maxConcurrentReads: 4,
    });

    const received = (id: string) =>
      framesOf(writer.text).filter((frame) => frame.event === `${id}:token`).length;
    const batchesSent = (id: string) =>
      writer.sends.filter((text) => text.includes(`event: ${id}:token`)).length;
    const total = new Map(sessions.map((id) => [id, backlog]));
    const append = async (id: string, count: number) => {
      await store.append(id, tokens(total.get(id)!, total.get(id)! + count));
      total.set(id, total.get(id)! + count);
    };
    let drains = 0;
    const readAhead = new Set<string>();
    const appendsDone = new Set<string>();
    while (sessions.some((id) => received(id) < total.get(id)!)) {
      await settle();
      expect(drains, "the catch-up keeps going").toBeLessThan((4 * backlog) / BATCH);
      expect(writer.writable).toBe(false);
      for (const id of sessions) {
        const ahead = (reads.get(id) ?? 0) - batchesSent(id);
        // The socket is full: at most one batch is read ahead of what was written.
        expect(ahead).toBeLessThanOrEqual(1);
        if (ahead === 1) readAhead.add(id);
        if (appendsDone.has(id)) continue;
        // Appends while the reader is behind, with a batch held: they arrive once, after it. The last
        // one comes when the held batch is the short one that would otherwise make the reader live.
        await append(id, 2);
        if (ahead === 1 && total.get(id)! - 2 - received(id) < BATCH) appendsDone.add(id);
      }
      await settle();
      writer.writable = true;
      drains++;
      connection.onDrain();
    }
    await settle();
    expect(drains).toBeGreaterThanOrEqual(backlog / BATCH);
    // ... the next batch was read while the socket was full, and the appends stopped at the end.
    expect([...readAhead].sort()).toEqual([...sessions].sort());
    expect([...appendsDone].sort()).toEqual([...sessions].sort());

    // Caught up: live events now come by notice, not by reading.
    writer.fillOnSend = false;
    writer.writable = true;
    connection.onDrain();
    await settle();
    const readsWhenLive = sessions.map((id) => reads.get(id) ?? 0);
    for (const id of sessions) await append(id, 3);
    for (const id of sessions) {
      await store.append(id, [{ type: "done", data: { session_id: id, total_tokens: total.get(id) } }]);
    }
    const frames = () => framesOf(writer.text);
    await expect
      .poll(() => frames().filter((frame) => frame.event.endsWith(":done")).length, { timeout: 10_000 })
      .toBe(2);
    expect(sessions.map((id) => reads.get(id) ?? 0)).toEqual(readsWhenLive);

    for (const id of sessions) {
      const mine = frames().filter((frame) => frame.event === `${id}:token`);
      expect(mine.map((frame) => frame.content)).toEqual(contents(0, total.get(id)!));
    }
    // Every frame's cursor is distinct (each one is a resume point).
    const ids = frames().map((frame) => frame.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(writer.ended).toBe(true);
  });
});

describe.each(STORE_KINDS)("read-ahead on a connection far behind on many sessions (%s store)", (kind) => {
  it("holds at most its concurrent-read allowance of batches read ahead, not one per session", async () => {
    const { store, reads, settle } = countingStore(await makeStore(kind));
    const prefix = randomPrefix().slice(2, 10);
    const sessions = Array.from({ length: 8 }, (_, i) => `w${i}-${prefix}`);
    // Not a multiple of the batch: every read but the held ones delivers something.
    const backlog = 3 * BATCH + 5;
    for (const id of sessions) {
      await store.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
      await store.append(id, tokens(0, backlog));
    }
    const allowance = 2;
    const { connection, writer } = await openMux(store, sessions, {
      closeWhenAllEnded: false,
      maxConcurrentReads: allowance,
    });
    const received = (id: string) =>
      framesOf(writer.text).filter((frame) => frame.event === `${id}:token`).length;
    const batchesSent = (id: string) =>
      writer.sends.filter((text) => text.includes(`event: ${id}:token`)).length;
    let mostHeld = 0;
    for (let drains = 0; sessions.some((id) => received(id) < backlog); drains++) {
      expect(drains, "the catch-up keeps going").toBeLessThan(10 * sessions.length * 3);
      await settle();
      const held = sessions.reduce((sum, id) => sum + (reads.get(id) ?? 0) - batchesSent(id), 0);
      expect(held).toBeLessThanOrEqual(allowance);
      mostHeld = Math.max(mostHeld, held);
      writer.writable = true;
      connection.onDrain();
    }
    expect(mostHeld).toBeGreaterThan(0);
    for (const id of sessions) {
      const mine = framesOf(writer.text).filter((frame) => frame.event === `${id}:token`);
      expect(mine.map((frame) => frame.content)).toEqual(contents(0, backlog));
    }
    connection.close();
  });
});

describe.each(STORE_KINDS)("replay of a backlog of many batches over HTTP (%s store)", (kind) => {
  it.each(["single", "mux"] as const)(
    "%s framing: every event once, in order, with appends during the replay",
    async (framing) => {
      const gw = await startTestGateway({
        ...storeOptions(kind),
        env: { CATCH_UP_BATCH: "50", MERGE_TOKENS_WHEN_BEHIND: "false", MAX_EVENTS_PER_SESSION: "100000" },
      });
      cleanups.push(() => gw.close());
      const id = `replay-${randomPrefix().slice(2, 10)}`;
      const backlog = 1_000;
      for (let i = 0; i < backlog; i += 250) {
        const res = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, { events: tokens(i, i + 250) });
        expect(res.status, res.text).toBe(202);
      }
      const path = framing === "single" ? `/api/v1/sessions/${id}/stream` : `/api/v1/stream?sessions=${id}`;
      const client = await openSse(`${gw.url}${path}`);
      cleanups.push(() => client.close());
      expect(client.status).toBe(200);
      const tokenEvent = framing === "single" ? "token" : `${id}:token`;
      // Appended while the client is (most likely) still catching up, then the end.
      for (let i = backlog; i < backlog + 100; i += 10) {
        const res = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, { events: tokens(i, i + 10) });
        expect(res.status, res.text).toBe(202);
      }
      await postJson(`${gw.url}/api/v1/sessions/${id}/events`, {
        events: [{ type: "done", data: { session_id: id, total_tokens: backlog + 100 } }],
      });
      await closedWithin(client);
      const received = client.events.filter((event) => event.event === tokenEvent);
      expect(received.map((event) => (JSON.parse(event.data) as { content: string }).content)).toEqual(
        contents(0, backlog + 100),
      );
      expect(client.events.at(-1)?.event).toBe(framing === "single" ? "done" : `${id}:done`);
    },
  );
});
