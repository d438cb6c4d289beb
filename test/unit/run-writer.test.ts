import { describe, expect, it } from "vitest";
import { RunWriter } from "../../src/agent/run-writer.js";
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
