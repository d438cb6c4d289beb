/**
 * A connection finds its readers by scanning a short array, and through an index by session id once
 * it reads many sessions (subscription sets): both ways add each session once, remove it, and end the
 * connection when every session has ended.
 */
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Hub } from "../../src/hub/hub.js";
import { createMetrics } from "../../src/metrics.js";
import { CursorTracker } from "../../src/mux/cursor.js";
import { StreamConnection } from "../../src/mux/stream-connection.js";
import type { SseWriter } from "../../src/sse/writer.js";
import type { StreamStore } from "../../src/store/types.js";
import { testMemoryStore } from "../helpers/memory-store.js";

class FakeWriter {
  writable = true;
  ended = false;
  text = "";
  send(frames: string): void {
    this.text += frames;
  }
  end(): void {
    this.ended = true;
    this.writable = false;
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

/** A multiplexed connection over `store` and `hub`, with a writer that records what it is sent. */
function muxConnection(store: StreamStore, hub: Hub, closeWhenAllEnded: boolean) {
  const writer = new FakeWriter();
  const tracker = new CursorTracker();
  const metrics = createMetrics({ defaultMetrics: false });
  const connection = new StreamConnection(
    { hub, store, writer: writer as unknown as SseWriter, metrics, logger: silent, tracker },
    {
      framing: "mux",
      closeWhenAllEnded,
      mergeTokensWhenBehind: false,
      catchUpBatch: 10,
      maxConcurrentReads: 4,
      retryReadAfterMs: 50,
    },
  );
  return { connection, writer, tracker };
}

const silent = pino({ level: "silent" });
const hubOn = (store: StreamStore) =>
  new Hub(store.notifier, createMetrics({ defaultMetrics: false }), silent);

describe.each([5, 40])("a connection with %i sessions", (count) => {
  it("reads each session once, forgets removed ones, and closes when the rest have ended", async () => {
    const store = testMemoryStore({ maxEventsPerSession: 100, lifecycleMaxEvents: 100 });
    const hub = hubOn(store);
    const ids = Array.from({ length: count }, (_, i) => `m${i}`);
    for (const id of ids) {
      await store.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
      await store.append(id, [{ type: "token", data: { content: id } }]);
    }
    const { connection, writer, tracker } = muxConnection(store, hub, true);
    for (const [index, id] of ids.entries()) {
      const info = await store.getSession(id);
      await connection.addSession(id, index, { kind: "none" }, info);
      // A second add of the same session (a subscription change applied twice) is ignored.
      await connection.addSession(id, index, { kind: "none" }, info);
    }
    connection.sessionsAdded();
    await settle();
    expect(connection.sessionIds).toEqual(ids);
    for (const id of ids) expect(writer.text.split(`event: ${id}:token\n`).length - 1).toBe(1);

    const removed = ids[count - 1]!;
    connection.removeSession(removed);
    expect(connection.sessionIds).toEqual(ids.slice(0, -1));
    expect(hub.watchedSessions).toBe(count - 1);
    expect(tracker.get(count - 1)).toEqual({ kind: "none" });

    for (const id of ids.slice(0, -1)) await store.append(id, [{ type: "done", data: {} }]);
    await settle();
    expect(writer.ended).toBe(true);
    expect(hub.watchedSessions).toBe(0);
  });
});

describe("removing a session", () => {
  it("while its catch-up read is in flight: the read's events are not sent, nor kept in the cursor", async () => {
    const base = testMemoryStore();
    let releaseRead: () => void = () => {};
    const readGate = new Promise<void>((resolve) => {
      releaseRead = resolve;
    });
    const store: typeof base = {
      ...base,
      read: async (id, after, count) => {
        const result = await base.read(id, after, count);
        await readGate;
        return result;
      },
    };
    const hub = hubOn(store);
    await base.createSession({ id: "gone", model: null, metadata: {}, owner: null, createdAt: Date.now() });
    await base.append("gone", [{ type: "token", data: { content: "late" } }]);
    const { connection, writer, tracker } = muxConnection(store, hub, false);
    await connection.addSession("gone", 0, { kind: "none" }, await base.getSession("gone"));
    connection.sessionsAdded();
    await settle();
    connection.removeSession("gone");
    releaseRead();
    await settle();
    expect(writer.text).not.toContain("gone:token");
    expect(tracker.get(0)).toEqual({ kind: "none" });
  });
});
