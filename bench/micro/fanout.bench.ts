/**
 * The hub and the connections without sockets or Redis: live fan-out (one batch pushed to every local
 * reader of its session, framed per connection) and catch-up (a connection reading a backlog from an
 * in-memory store until it is live). Writers only count what they are sent.
 */
import { pino } from "pino";
import { bench, describe } from "vitest";
import { Hub } from "../../src/hub/hub.js";
import { createMetrics } from "../../src/metrics.js";
import { CursorTracker } from "../../src/mux/cursor.js";
import { StreamConnection, type StreamConnectionOptions } from "../../src/mux/stream-connection.js";
import type { SseWriter } from "../../src/sse/writer.js";
import { createKeyScheme } from "../../src/store/keys.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createMemoryPubSub } from "../../src/store/pubsub.js";
import type { StoredEvent, StreamStore } from "../../src/store/types.js";

const BATCH = 500;
const logger = pino({ level: "silent" });

class CountingWriter {
  writable = true;
  bytes = 0;
  ended: () => void = () => {};
  send(text: string): void {
    this.bytes += text.length;
  }
  end(): void {
    this.writable = false;
    this.ended();
  }
}

function memoryStore(): StreamStore {
  return createMemoryStore({
    pubsub: createMemoryPubSub(),
    keys: createKeyScheme("bench:"),
    retention: {
      maxEventsPerSession: 100_000,
      lifecycleMaxEvents: 1_000,
      endedSessionTtlSeconds: 600,
      idleSessionTtlSeconds: 600,
      requestRecordTtlSeconds: 600,
    },
  });
}

function options(framing: "single" | "mux", closeWhenAllEnded: boolean): StreamConnectionOptions {
  return {
    framing,
    closeWhenAllEnded,
    mergeTokensWhenBehind: false,
    catchUpBatch: BATCH,
    maxConcurrentReads: 4,
    retryReadAfterMs: 500,
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));
const create = (store: StreamStore, id: string) =>
  store.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });

/**
 * `connections` connections, each reading `perConnection` of `sessions` sessions (all live), and a
 * function that pushes the next one-token batch of the next session, as a run's local hand-over does.
 */
async function liveFanOut(sessions: number, connections: number, perConnection: number) {
  const store = memoryStore();
  const metrics = createMetrics({ defaultMetrics: false });
  const hub = new Hub(store.notifier, metrics, logger);
  const ids = Array.from({ length: sessions }, (_, k) => `s${k}`);
  for (const id of ids) await create(store, id);
  const framing = perConnection === 1 ? "single" : "mux";
  for (let c = 0; c < connections; c++) {
    const connection = new StreamConnection(
      {
        hub,
        store,
        writer: new CountingWriter() as unknown as SseWriter,
        metrics,
        logger,
        tracker: framing === "mux" ? new CursorTracker() : null,
      },
      options(framing, false),
    );
    for (let k = 0; k < perConnection; k++) {
      const id = ids[(c * perConnection + k) % sessions]!;
      await connection.addSession(id, k, { kind: "none" }, await store.getSession(id));
    }
    connection.sessionsAdded();
  }
  await settle();
  const last = new Map<string, string>(ids.map((id) => [id, ""]));
  let ms = 1_795_616_503_812;
  let next = 0;
  const data = JSON.stringify({ content: " the" });
  return () => {
    const id = ids[next++ % sessions]!;
    const prevId = last.get(id)!;
    const event: StoredEvent = { id: `${ms++}-0`, type: "token", data };
    last.set(id, event.id);
    hub.deliverLocal(id, prevId, () => [event]);
  };
}

describe("live fan-out: one event to every reader of its session", async () => {
  const single = await liveFanOut(1, 1_000, 1);
  bench("1,000 single-session connections on 1 session (1,000 deliveries)", single);
  const mux = await liveFanOut(100, 1_000, 10);
  bench("1,000 connections × 10 of 100 sessions (100 deliveries, cursor of 10)", mux);
});

/** A connection resuming `backlog` tokens and the end from the start; resolves once it closed. */
async function replayer(backlog: number, framing: "single" | "mux") {
  const store = memoryStore();
  const metrics = createMetrics({ defaultMetrics: false });
  const hub = new Hub(store.notifier, metrics, logger);
  await create(store, "r");
  for (let k = 0; k < backlog; k += BATCH) {
    await store.append(
      "r",
      Array.from({ length: Math.min(BATCH, backlog - k) }, () => ({
        type: "token",
        data: { content: " the" },
      })),
    );
  }
  await store.append("r", [{ type: "done", data: { session_id: "r", total_tokens: backlog } }]);
  const info = await store.getSession("r");
  return async () => {
    const writer = new CountingWriter();
    const closed = new Promise<void>((resolve) => {
      writer.ended = resolve;
    });
    const connection = new StreamConnection(
      {
        hub,
        store,
        writer: writer as unknown as SseWriter,
        metrics,
        logger,
        tracker: framing === "mux" ? new CursorTracker() : null,
      },
      options(framing, true),
    );
    await connection.addSession("r", 0, { kind: "none" }, info);
    connection.sessionsAdded();
    await closed;
  };
}

describe("catch-up: one connection replays 10,000 tokens until the end", async () => {
  const single = await replayer(10_000, "single");
  bench("single framing", single, { iterations: 20 });
  const mux = await replayer(10_000, "mux");
  bench("mux framing", mux, { iterations: 20 });
});
