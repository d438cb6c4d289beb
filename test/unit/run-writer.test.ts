import { Redis } from "ioredis";
import { afterEach, describe, expect, inject, it } from "vitest";
import { RunWriter } from "../../src/agent/run-writer.js";
import { createKeyScheme } from "../../src/store/keys.js";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { createRedisStore } from "../../src/store/redis-store.js";
import type { StreamStore } from "../../src/store/types.js";
import { DEFAULT_RETENTION } from "../contract/stream-store.contract.js";
import { randomPrefix, startRedis } from "../helpers/index.js";
import { testMemoryStore as memoryStore } from "../helpers/memory-store.js";

const session = (id: string) => ({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
const token = (content: string) => ({ type: "token", data: { content } });

function writerFor(store: ReturnType<typeof memoryStore>, id: string, ready?: Promise<boolean>) {
  const stops: string[] = [];
  const writer = new RunWriter(store, id, `w.${id}`, {
    maxBufferedEvents: 100,
    retryDelayMs: 10,
    onOverflow: () => stops.push("overflow"),
    onEndedElsewhere: () => stops.push("ended elsewhere"),
    ...(ready ? { ready } : {}),
  });
  return { writer, stops };
}

describe("RunWriter", () => {
  it("holds events until the session exists, then writes them once and in order", async () => {
    const store = memoryStore();
    let markCreated: (created: boolean) => void = () => {};
    const ready = new Promise<boolean>((resolve) => {
      markCreated = resolve;
    });
    const { writer } = writerFor(store, "gated", ready);
    writer.push(token("a"));
    writer.push(token("b"));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await store.getSession("gated")).toBeNull();
    await store.createSession(session("gated"));
    markCreated(true);
    writer.push(token("c"));
    await writer.finish({
      type: "done",
      data: { session_id: "gated", total_tokens: 3, finish_reason: "stop" },
    });
    const { events } = await store.read("gated", null, 100);
    expect(events.map((event) => `${event.type}:${event.data}`)).toEqual([
      'token:{"content":"a"}',
      'token:{"content":"b"}',
      'token:{"content":"c"}',
      'done:{"session_id":"gated","total_tokens":3,"finish_reason":"stop"}',
    ]);
  });

  it("writes nothing and stops the run when the session could not be created", async () => {
    const store = memoryStore();
    await store.createSession(session("taken"));
    await store.append("taken", [token("theirs")]);
    const { writer, stops } = writerFor(store, "taken", Promise.resolve(false));
    writer.push(token("ours"));
    await writer.finish({
      type: "done",
      data: { session_id: "taken", total_tokens: 1, finish_reason: "stop" },
    });
    expect(stops).toEqual(["ended elsewhere"]);
    const { events } = await store.read("taken", null, 100);
    expect(events.map((event) => event.data)).toEqual(['{"content":"theirs"}']);
    expect((await store.getSession("taken"))?.status).toBe("running");
  });

  it("sends a turn's first event at once and the rest of that turn as one batch", async () => {
    const store = memoryStore();
    await store.createSession(session("burst"));
    const batches: string[][] = [];
    const recording: typeof store = {
      ...store,
      append: (id, events, options) => {
        batches.push(events.map((event) => String(event.data.content ?? event.type)));
        return store.append(id, events, options);
      },
    };
    const writer = new RunWriter(recording, "burst", "w.burst", {
      maxBufferedEvents: 100,
      retryDelayMs: 10,
      onOverflow: () => {},
      onEndedElsewhere: () => {},
    });
    writer.push(token("a"));
    expect(batches).toEqual([["a"]]);
    writer.push(token("b"));
    writer.push(token("c"));
    await new Promise((resolve) => setImmediate(resolve));
    writer.push(token("d"));
    await writer.finish({
      type: "done",
      data: { session_id: "burst", total_tokens: 4, finish_reason: "stop" },
    });
    expect(batches).toEqual([["a"], ["b", "c"], ["d"], ["done"]]);
    const { events } = await store.read("burst", null, 100);
    expect(events.map((event) => event.type)).toEqual(["token", "token", "token", "token", "done"]);
  });

  it("without a ready gate, writes right behind a creation that was only sent", async () => {
    const store = memoryStore();
    const created = store.createSession(session("fresh"));
    const { writer, stops } = writerFor(store, "fresh");
    writer.push(token("first"));
    await writer.finish({
      type: "done",
      data: { session_id: "fresh", total_tokens: 1, finish_reason: "stop" },
    });
    expect(await created).toBe(true);
    expect(stops).toEqual([]);
    const { events } = await store.read("fresh", null, 100);
    expect(events.map((event) => event.type)).toEqual(["token", "done"]);
  });

  it("written() resolves once pushed events are stored, or after its timeout when the store does not answer", async () => {
    const store = memoryStore();
    await store.createSession(session("w"));
    const { writer } = writerFor(store, "w");
    writer.push(token("a"));
    await writer.written(10_000);
    expect((await store.read("w", null, 10)).events).toHaveLength(1);

    const stuck: typeof store = { ...store, append: () => new Promise(() => {}) };
    const stalled = new RunWriter(stuck, "w", "w.stuck", {
      maxBufferedEvents: 100,
      retryDelayMs: 10,
      onOverflow: () => {},
      onEndedElsewhere: () => {},
    });
    stalled.push(token("b"));
    await stalled.written(20);
    expect(stalled.bufferedEvents).toBe(1);
  });
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A Redis store on its own connections, as the gateway makes them: commands wait through an outage
 * (`maxRetriesPerRequest: null`) and the client reconnects quickly.
 */
async function redisStore(url: string): Promise<StreamStore> {
  const options = {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    retryStrategy: () => 20,
  };
  const command = new Redis(url, options);
  const subscriber = new Redis(url, options);
  // An outage in a test is on purpose: its connection errors are not news.
  command.on("error", () => {});
  subscriber.on("error", () => {});
  await Promise.all([command.connect(), subscriber.connect()]);
  const store = createRedisStore({
    redis: command,
    pubsub: createRedisPubSub(subscriber, command),
    keys: createKeyScheme(randomPrefix()),
    retention: DEFAULT_RETENTION,
  });
  cleanups.push(async () => {
    await store.close();
    command.disconnect();
    subscriber.disconnect();
  });
  return store;
}

const BUFFER = 8;

function boundedWriter(store: StreamStore, id: string) {
  const stops: string[] = [];
  const writer = new RunWriter(store, id, `w.${id}`, {
    maxBufferedEvents: BUFFER,
    retryDelayMs: 10,
    onOverflow: () => stops.push("overflow"),
    onEndedElsewhere: () => stops.push("ended elsewhere"),
  });
  return { writer, stops };
}

const STORES: Record<string, () => Promise<StreamStore>> = {
  memory: async () => memoryStore(),
  redis: () => redisStore(inject("redisUrl")),
};

describe.each(Object.keys(STORES))("RunWriter backpressure over the %s store", (kind) => {
  it("a buffer that fills while the store answers makes the run wait for room, never overflow", async () => {
    const store = await STORES[kind]!();
    await store.createSession(session("fast"));
    const { writer, stops } = boundedWriter(store, "fast");
    const total = 20 * BUFFER;
    let waits = 0;
    // As fast as a run can push: nothing but the writer's own promises ever lets the store answer.
    for (let i = 0; i < total; i++) {
      const room = writer.push(token(`t${i} `));
      expect(writer.bufferedEvents).toBeLessThanOrEqual(BUFFER);
      if (room === undefined) {
        expect(writer.bufferedEvents).toBeLessThan(BUFFER);
        continue;
      }
      waits++;
      expect(writer.bufferedEvents).toBe(BUFFER);
      await room;
      expect(writer.bufferedEvents).toBeLessThan(BUFFER);
    }
    await writer.finish({
      type: "done",
      data: { session_id: "fast", total_tokens: total, finish_reason: "stop" },
    });
    expect(stops).toEqual([]);
    expect(waits).toBeGreaterThan(0);
    const { events } = await store.read("fast", null, total + 10);
    const contents = events.filter((event) => event.type === "token").map((event) => event.data);
    expect(contents).toEqual(Array.from({ length: total }, (_, i) => JSON.stringify({ content: `t${i} ` })));
    expect(events.at(-1)?.type).toBe("done");
    expect((await store.getSession("fast"))?.status).toBe("done");
  });

  it("a buffer that fills while the store is not ready overflows at once", async () => {
    const real = await STORES[kind]!();
    await real.createSession(session("down"));
    const down: StreamStore = { ...real, isReady: () => false, append: () => new Promise(() => {}) };
    const { writer, stops } = boundedWriter(down, "down");
    for (let i = 0; i < BUFFER - 1; i++) expect(writer.push(token("x"))).toBeUndefined();
    expect(stops).toEqual([]);
    expect(writer.push(token("x"))).toBeUndefined();
    expect(stops).toEqual(["overflow"]);
    expect(writer.push(token("ignored"))).toBeUndefined();
    expect(writer.bufferedEvents).toBe(BUFFER);
  });

  it("appends that fail while the run waits for room end the wait with an overflow", async () => {
    const real = await STORES[kind]!();
    await real.createSession(session("failing"));
    let failAppends: (error: Error) => void = () => {};
    const failing = new Promise<never>((_, reject) => {
      failAppends = reject;
    });
    failing.catch(() => {});
    const { writer, stops } = boundedWriter({ ...real, append: () => failing }, "failing");
    let room: Promise<void> | undefined;
    for (let i = 0; i < BUFFER; i++) room = writer.push(token("x"));
    expect(room).toBeInstanceOf(Promise);
    expect(stops).toEqual([]);
    failAppends(new Error("ERR the store refuses"));
    await room;
    expect(stops).toEqual(["overflow"]);
  });
});

describe("RunWriter backpressure over a Redis that goes away", () => {
  it("waits while Redis holds its appends, and overflows once Redis is gone", async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.dispose());
    const store = await redisStore(redis.url);
    await store.createSession(session("held"));
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    admin.on("error", () => {});
    await admin.connect();
    cleanups.push(() => admin.disconnect());

    // Redis answers, but holds every write: the run's appends are in flight, its buffer full.
    await admin.call("CLIENT", "PAUSE", "60000", "WRITE");
    const { writer, stops } = boundedWriter(store, "held");
    let room: Promise<void> | undefined;
    for (let i = 0; i < BUFFER; i++) room = writer.push(token("x"));
    expect(room).toBeInstanceOf(Promise);
    let waitEnded = false;
    void room?.then(() => {
      waitEnded = true;
    });
    // Several of the watchdog's checks later, the connected store still holds the run, unharmed.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(store.isReady()).toBe(true);
    expect(waitEnded).toBe(false);
    expect(stops).toEqual([]);

    // Redis goes away with the appends: the wait must not outlast it.
    await redis.stop();
    await room;
    expect(stops).toEqual(["overflow"]);
    expect(store.isReady()).toBe(false);
  });
});
