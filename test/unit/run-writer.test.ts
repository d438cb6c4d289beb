import { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, describe, expect, inject, it } from "vitest";
import { RunManager } from "../../src/agent/run-manager.js";
import { RunWriter } from "../../src/agent/run-writer.js";
import type { ModelProvider } from "../../src/agent/types.js";
import { createMetrics } from "../../src/metrics.js";
import { createKeyScheme } from "../../src/store/keys.js";
import type { PubSub } from "../../src/store/pubsub.js";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { createRedisStore } from "../../src/store/redis-store.js";
import type { StreamStore } from "../../src/store/types.js";
import { DEFAULT_RETENTION } from "../contract/stream-store.contract.js";
import { logLines, type RedisServerHandle, randomPrefix, startRedis } from "../helpers/index.js";
import { testMemoryStore as memoryStore } from "../helpers/memory-store.js";

const session = (id: string) => ({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
const token = (content: string) => ({ type: "token", data: { content } });

function writerFor(store: ReturnType<typeof memoryStore>, id: string, ready?: Promise<boolean>) {
  const stops: string[] = [];
  const writer = new RunWriter(store, id, `w.${id}`, {
    maxBufferedEvents: 100,
    retryDelayMs: 10,
    maxStoreWaitMs: 60_000,
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
      maxStoreWaitMs: 60_000,
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
      maxStoreWaitMs: 60_000,
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
async function redisBackend(url: string): Promise<{ store: StreamStore; pubsub: PubSub }> {
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
  const pubsub = createRedisPubSub(subscriber, command);
  const store = createRedisStore({
    redis: command,
    pubsub,
    keys: createKeyScheme(randomPrefix()),
    retention: DEFAULT_RETENTION,
  });
  cleanups.push(async () => {
    await store.close();
    command.disconnect();
    subscriber.disconnect();
  });
  return { store, pubsub };
}

const redisStore = async (url: string) => (await redisBackend(url)).store;

/** A redis-server of the test's own, kept on disk (a restart keeps the sessions), and a client to steer it. */
async function ownRedis(): Promise<{ redis: RedisServerHandle; admin: Redis }> {
  const redis = await startRedis({ persistent: true });
  cleanups.push(() => redis.dispose());
  const admin = new Redis(redis.url, {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    retryStrategy: () => 20,
  });
  admin.on("error", () => {});
  await admin.connect();
  cleanups.push(() => admin.disconnect());
  return { redis, admin };
}

const BUFFER = 8;

/** `what` records, in order, the writer's overflow, its waits for an unavailable store, and a stop. */
function boundedWriter(
  store: StreamStore,
  id: string,
  {
    maxStoreWaitMs = 60_000,
    onStoreWait = () => {},
  }: { maxStoreWaitMs?: number; onStoreWait?: () => void } = {},
) {
  const what: string[] = [];
  const writer = new RunWriter(store, id, `w.${id}`, {
    maxBufferedEvents: BUFFER,
    retryDelayMs: 10,
    maxStoreWaitMs,
    onOverflow: () => what.push("overflow"),
    onStoreWait: () => {
      what.push("store wait");
      onStoreWait();
    },
    onEndedElsewhere: () => what.push("ended elsewhere"),
  });
  return { writer, what };
}

const STORES: Record<string, () => Promise<StreamStore>> = {
  memory: async () => memoryStore(),
  redis: () => redisStore(inject("redisUrl")),
};

describe.each(Object.keys(STORES))("RunWriter backpressure over the %s store", (kind) => {
  it("a buffer that fills while the store answers makes the run wait for room, never overflow", async () => {
    const store = await STORES[kind]!();
    await store.createSession(session("fast"));
    const { writer, what } = boundedWriter(store, "fast");
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
    expect(what).toEqual([]);
    expect(waits).toBeGreaterThan(0);
    expect(writer.fullBufferWaits).toBe(waits);
    const { events } = await store.read("fast", null, total + 10);
    const contents = events.filter((event) => event.type === "token").map((event) => event.data);
    expect(contents).toEqual(Array.from({ length: total }, (_, i) => JSON.stringify({ content: `t${i} ` })));
    expect(events.at(-1)?.type).toBe("done");
    expect((await store.getSession("fast"))?.status).toBe("done");
  });
});

/** Pushes `total` tokens as fast as a run does, awaiting room when told; `onFull` runs at each wait. */
async function pushAll(
  writer: RunWriter,
  total: number,
  onFull: (i: number) => Promise<void> | void = () => {},
): Promise<void> {
  for (let i = 0; i < total; i++) {
    const room = writer.push(token(`t${i} `));
    if (room === undefined) continue;
    await onFull(i);
    await room;
  }
}

const tokensOf = (events: Array<{ type: string; data: string }>) =>
  events
    .filter((event) => event.type === "token")
    .map((event) => (JSON.parse(event.data) as { content: string }).content);

describe("RunWriter through a Redis outage", () => {
  it("a full buffer waits out a Redis restart shorter than the bound: every event lands once, in order", async () => {
    const { redis } = await ownRedis();
    const store = await redisStore(redis.url);
    await store.createSession(session("restart"));
    // Redis comes back only once the run waits on its full buffer for the store (the writer says so).
    const { writer, what } = boundedWriter(store, "restart", { onStoreWait: () => void redis.start() });
    const total = 30 * BUFFER;
    let stopped = false;
    await pushAll(writer, total, async (i) => {
      // Mid-run, while the run is held by backpressure: Redis goes away (its data stays on disk).
      if (!stopped && i > 10 * BUFFER) {
        stopped = true;
        await redis.stop();
      }
    });
    await writer.finish({
      type: "done",
      data: { session_id: "restart", total_tokens: total, finish_reason: "stop" },
    });
    expect(stopped).toBe(true);
    expect(what).toEqual(["store wait"]);
    const { events } = await store.read("restart", null, total + 10);
    expect(tokensOf(events)).toEqual(Array.from({ length: total }, (_, i) => `t${i} `));
    expect(events.at(-1)?.type).toBe("done");
  });

  it("a full buffer waits while Redis holds its writes (CLIENT PAUSE WRITE), and goes on once it lets them through", async () => {
    const PAUSE_MS = 300;
    const { redis, admin } = await ownRedis();
    const store = await redisStore(redis.url);
    await store.createSession(session("held"));
    // Many watchdog checks (every 10 ms) fit in the pause: any of them could end the run, none may.
    const { writer, what } = boundedWriter(store, "held");
    const total = 10 * BUFFER;
    let pausedAt: number | null = null;
    await pushAll(writer, total, async (i) => {
      if (pausedAt !== null || i < 2 * BUFFER) return;
      pausedAt = Date.now();
      // Redis answers, and holds every write for PAUSE_MS: the run's appends wait in it, its buffer full.
      await admin.call("CLIENT", "PAUSE", String(PAUSE_MS), "WRITE");
    });
    await writer.finish({
      type: "done",
      data: { session_id: "held", total_tokens: total, finish_reason: "stop" },
    });
    expect(pausedAt).not.toBeNull();
    // The last appends were sent after the pause began: they cannot have landed before it ended.
    expect(Date.now() - (pausedAt ?? 0)).toBeGreaterThanOrEqual(PAUSE_MS);
    expect(what).toEqual([]);
    const { events } = await store.read("held", null, total + 10);
    expect(tokensOf(events)).toEqual(Array.from({ length: total }, (_, i) => `t${i} `));
  });

  it("a Redis away for longer than the bound overflows the full buffer, no sooner; what it held is written once Redis returns", async () => {
    const BOUND_MS = 400;
    const { redis } = await ownRedis();
    const store = await redisStore(redis.url);
    await store.createSession(session("gone"));
    const { writer, what } = boundedWriter(store, "gone", { maxStoreWaitMs: BOUND_MS });
    await redis.stop();
    const pushedAt = Date.now();
    let room: Promise<void> | undefined;
    for (let i = 0; room === undefined; i++) room = writer.push(token(`t${i} `));
    await room;
    // The bound is counted from the first append the store did not take.
    expect(Date.now() - pushedAt).toBeGreaterThanOrEqual(BOUND_MS);
    expect(what).toEqual(["store wait", "overflow"]);
    expect(writer.push(token("after the overflow"))).toBeUndefined();
    expect(writer.bufferedEvents).toBe(BUFFER);

    await redis.start();
    await writer.finish({ type: "error", data: { code: "store_unavailable", message: "cut short" } });
    const { events } = await store.read("gone", null, 100);
    expect(tokensOf(events)).toEqual(Array.from({ length: BUFFER }, (_, i) => `t${i} `));
    expect(events.at(-1)?.type).toBe("error");
  });

  it("appends refused by Redis (out of memory) are waited out within the bound, and overflow past it", async () => {
    const { redis, admin } = await ownRedis();
    const store = await redisStore(redis.url);
    await store.createSession(session("refused"));
    await store.createSession(session("refused-long"));
    // Every write refused with an error (`OOM command not allowed…`): the store answers, and takes nothing.
    await admin.call("CONFIG", "SET", "maxmemory", "1");
    const { writer, what } = boundedWriter(store, "refused", {
      onStoreWait: () => void admin.call("CONFIG", "SET", "maxmemory", "0"),
    });
    await pushAll(writer, 4 * BUFFER);
    await writer.finish({
      type: "done",
      data: { session_id: "refused", total_tokens: 0, finish_reason: "stop" },
    });
    expect(what).toEqual(["store wait"]);
    expect(tokensOf((await store.read("refused", null, 100)).events)).toHaveLength(4 * BUFFER);

    await admin.call("CONFIG", "SET", "maxmemory", "1");
    const long = boundedWriter(store, "refused-long", { maxStoreWaitMs: 300 });
    await pushAll(long.writer, 4 * BUFFER);
    expect(long.what).toEqual(["store wait", "overflow"]);
    await admin.call("CONFIG", "SET", "maxmemory", "0");
    await long.writer.finish({ type: "error", data: { code: "store_unavailable", message: "cut short" } });
    const { events } = await store.read("refused-long", null, 100);
    expect(tokensOf(events)).toHaveLength(BUFFER);
    expect(events.at(-1)?.type).toBe("error");
  });
});

/**
 * A model that streams `total` tokens as fast as it is read (a burst), and calls `at(i)` before its
 * i-th token: what the test does to Redis mid-run. Its `aborted` resolves when the run stops reading it.
 */
function burstModel(
  total: number,
  at: (i: number) => Promise<void> | void,
): ModelProvider & { aborted: Promise<void> } {
  let markAborted: () => void = () => {};
  const aborted = new Promise<void>((resolve) => {
    markAborted = resolve;
  });
  return {
    name: "openai",
    aborted,
    async *stream({ signal }) {
      signal.addEventListener("abort", () => markAborted(), { once: true });
      for (let i = 0; i < total; i++) {
        await at(i);
        yield { kind: "token", content: `t${i} ` };
      }
      yield { kind: "finish", reason: "stop" };
    },
  };
}

/** Resolves once a log line with this message has been written. */
async function logged(lines: Array<Record<string, unknown>>, msg: string): Promise<Record<string, unknown>> {
  for (;;) {
    const line = lines.find((candidate) => candidate.msg === msg);
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const STORE_WAIT_LOG = "the store is unavailable and the run's buffer is full: the run waits for it";
const RUN_BUFFER = 16;
const RUN_TOKENS = 2_000;

/** A RunManager as the gateway makes one, on the test's own Redis, reading `model`. */
async function runManager(redisUrl: string, model: ModelProvider, runStoreOutageMs: number) {
  const { store, pubsub } = await redisBackend(redisUrl);
  const { sink, lines } = logLines();
  const runs = new RunManager(
    {
      store,
      pubsub,
      controlChannel: `${randomPrefix()}control`,
      providers: { openai: model, simulated: model },
      metrics: createMetrics({ defaultMetrics: false }),
      logger: pino({ level: "info" }, sink),
    },
    {
      instanceId: "i1",
      defaultModel: "gpt-test",
      leaseMs: 10_000,
      cancelGraceMs: 1_000,
      runBufferMaxEvents: RUN_BUFFER,
      runStoreOutageMs,
    },
  );
  await runs.init();
  cleanups.push(() => runs.stop());
  return { runs, store, lines };
}

describe("a fast run through a Redis outage", () => {
  it("Redis restarted while the run waits on its full buffer: the run ends done, its text exact", async () => {
    const { redis } = await ownRedis();
    let stoppedAt = -1;
    const model = burstModel(RUN_TOKENS, async (i) => {
      if (i !== RUN_TOKENS / 4) return;
      stoppedAt = i;
      await redis.stop();
    });
    const { runs, store, lines } = await runManager(redis.url, model, 60_000);
    const started = await runs.start({ messages: [{ role: "user", content: "go" }], freshId: true });
    if (started.kind !== "started") throw new Error("the run did not start");
    // Redis comes back once the run says it waits for it with a full buffer (not at once: the wait is
    // what is under test).
    const waiting = await logged(lines, STORE_WAIT_LOG);
    await redis.start();
    expect(await runs.waitForRuns(60_000)).toBe(true);

    expect(stoppedAt).toBe(RUN_TOKENS / 4);
    expect(waiting.sessionId).toBe(started.session.id);
    const { events } = await store.read(started.session.id, null, RUN_TOKENS + 10);
    expect(tokensOf(events).join("")).toBe(Array.from({ length: RUN_TOKENS }, (_, i) => `t${i} `).join(""));
    expect(
      events.filter((event) => ["done", "error", "cancelled"].includes(event.type)).map((e) => e.type),
    ).toEqual(["done"]);
    expect(events.at(-1)?.type).toBe("done");
    const ended = await logged(lines, "run ended");
    expect(ended).toMatchObject({ status: "done", tokens: RUN_TOKENS });
    expect(ended.fullBufferWaits).toBeGreaterThan(0);
  });

  it("Redis away for longer than RUN_STORE_OUTAGE_MS: the run ends error store_unavailable, its text a prefix", async () => {
    const OUTAGE_BOUND_MS = 500;
    const { redis } = await ownRedis();
    let stoppedAt = 0;
    const model = burstModel(RUN_TOKENS, async (i) => {
      if (i !== RUN_TOKENS / 4) return;
      await redis.stop();
      stoppedAt = Date.now();
    });
    const { runs, store, lines } = await runManager(redis.url, model, OUTAGE_BOUND_MS);
    const started = await runs.start({ messages: [{ role: "user", content: "go" }], freshId: true });
    if (started.kind !== "started") throw new Error("the run did not start");
    // The run gives up on its own (it stops reading the model); Redis returns only then, so that its
    // terminal event can be written.
    await model.aborted;
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(OUTAGE_BOUND_MS);
    await redis.start();
    expect(await runs.waitForRuns(60_000)).toBe(true);

    await logged(lines, STORE_WAIT_LOG);
    const { events } = await store.read(started.session.id, null, RUN_TOKENS + 10);
    const terminals = events.filter((event) => ["done", "error", "cancelled"].includes(event.type));
    expect(terminals.map((event) => `${event.type} ${event.data}`)).toEqual([
      expect.stringMatching(/^error \{"code":"store_unavailable"/),
    ]);
    expect(events.at(-1)?.type).toBe("error");
    const text = tokensOf(events).join("");
    const upstream = Array.from({ length: RUN_TOKENS }, (_, i) => `t${i} `).join("");
    expect(text.length).toBeGreaterThan(0);
    expect(text.length).toBeLessThan(upstream.length);
    expect(upstream.startsWith(text)).toBe(true);
    expect(await logged(lines, "run ended")).toMatchObject({ status: "error" });
  });
});

describe("a run that fails while Redis is away", () => {
  it("is logged at warn as an expected outage: the error's message and code, no stack", async () => {
    const { redis } = await ownRedis();
    let storeReady: () => boolean = () => true;
    const model: ModelProvider = {
      name: "openai",
      async *stream() {
        yield { kind: "token", content: "before " };
        await redis.stop();
        // Redis's process is gone; on a loaded machine its client may notice a moment later.
        while (storeReady()) await new Promise((resolve) => setTimeout(resolve, 5));
        // What a model call that needs the store would throw with Redis gone: not an upstream error.
        throw new Error("Connection is closed.");
      },
    };
    const { runs, store, lines } = await runManager(redis.url, model, 60_000);
    storeReady = () => store.isReady();
    const started = await runs.start({ messages: [{ role: "user", content: "go" }], freshId: true });
    if (started.kind !== "started") throw new Error("the run did not start");
    const failed = await logged(lines, "run failed");
    await redis.start();
    expect(await runs.waitForRuns(60_000)).toBe(true);
    expect(failed.level).toBe(40);
    // pino's err serializer gives a plain note `type: "Object"` and an empty stack.
    const err = failed.err as { code?: string; message?: string; stack?: string };
    expect(err).toMatchObject({ code: "unavailable", message: "Connection is closed." });
    expect(err.stack ?? "").toBe("");
  });
});
