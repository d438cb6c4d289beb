/**
 * Authorisation at delivery, on the catch-up path: a reader bound to the incarnation it was authorised
 * for that reads the store (behind, or after a resync) and finds another incarnation of its id (the
 * session expired and another subject created it) delivers none of it; it says `gap` and is detached.
 * Over the memory backend with a clock of the test's, so expiry is a step, not a wait. Then the class,
 * fuzzed: random sequences of appends, expiries, re-creations by either subject, lost notices and
 * resyncs never put an event of another incarnation on the reader's stream.
 */
import fc from "fast-check";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createMemoryBackend } from "../../src/backend/index.js";
import { Hub } from "../../src/hub/hub.js";
import { createMetrics } from "../../src/metrics.js";
import { CursorTracker } from "../../src/mux/cursor.js";
import { StreamConnection } from "../../src/mux/stream-connection.js";
import type { SseWriter } from "../../src/sse/writer.js";
import type { NotificationListener, StreamStore } from "../../src/store/types.js";

const silent = pino({ level: "silent" });
const IDLE_SECONDS = 60;

class FakeWriter {
  writable = true;
  text = "";
  ended = false;
  send(frames: string): void {
    this.text += frames;
  }
  end(): void {
    this.ended = true;
  }
}

function setup(framing: "single" | "mux") {
  let now = 1_800_000_000_000;
  const backend = createMemoryBackend({
    keyPrefix: "t:",
    retention: {
      maxEventsPerSession: 1000,
      lifecycleMaxEvents: 1000,
      endedSessionTtlSeconds: IDLE_SECONDS,
      idleSessionTtlSeconds: IDLE_SECONDS,
      requestRecordTtlSeconds: 600,
    },
    subscriptionLimits: { maxSessions: 100, ttlSeconds: 3_600 },
    clock: () => now,
  });
  const base = backend.store;
  // A notifier that can go deaf (notices dropped, as while the link is down) and be told to resync.
  let listener: NotificationListener | null = null;
  const control = { deaf: false };
  const store: StreamStore = {
    ...base,
    notifier: {
      setListener: (wrapped) => {
        listener = wrapped;
        base.notifier.setListener({
          onAppend: (notice) => {
            if (!control.deaf) wrapped.onAppend(notice);
          },
          onResync: () => wrapped.onResync(),
        });
      },
      watch: (id) => base.notifier.watch(id),
      unwatch: (id) => base.notifier.unwatch(id),
    },
  };
  const metrics = createMetrics({ defaultMetrics: false });
  const hub = new Hub(store.notifier, metrics, silent);
  const writer = new FakeWriter();
  const connection = new StreamConnection(
    {
      hub,
      store,
      writer: writer as unknown as SseWriter,
      metrics,
      logger: silent,
      tracker: framing === "mux" ? new CursorTracker() : null,
    },
    {
      framing,
      closeWhenAllEnded: true,
      mergeTokensWhenBehind: false,
      catchUpBatch: 100,
      maxConcurrentReads: 4,
      retryReadAfterMs: 50,
    },
  );
  const publish = (owner: string, content: string) =>
    base.append("s", [{ type: "token", data: { content } }], {
      createIfMissing: { id: "s", model: null, metadata: {}, owner, createdAt: now },
    });
  /** A few milliseconds pass (appends in one millisecond of one incarnation share its stamp anyway). */
  const tick = () => {
    now += 3;
  };
  return {
    store: base,
    writer,
    connection,
    control,
    publish,
    advance: (ms: number) => {
      now += ms;
    },
    tick,
    resync: () => listener?.onResync(),
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe("a bound reader catching up from the store", () => {
  for (const framing of ["single", "mux"] as const) {
    it(`finds another incarnation of its id and delivers none of it (${framing})`, async () => {
      const { store, writer, connection, control, publish, advance, resync } = setup(framing);
      await publish("alice", "alice-1");
      const info = await store.getSession("s");
      await connection.addSession("s", 0, { kind: "none" }, info, null, info!.createdAt);
      connection.sessionsAdded();
      await settle();
      expect(writer.text).toContain("alice-1");

      // Alice's session expires unseen; Bob creates the id again while this reader hears no notice.
      control.deaf = true;
      advance((IDLE_SECONDS + 1) * 1000);
      expect(await store.getSession("s")).toBeNull();
      await publish("bob", "bob-secret");
      expect((await store.getSession("s"))?.owner).toBe("bob");
      // Notices may have been missed: the reader reads the store from its position.
      resync();
      await settle();

      expect(writer.text).not.toContain("bob-secret");
      const gap = framing === "mux" ? "event: s:gap" : "event: gap";
      expect(writer.text).toContain(gap);
      expect(writer.text).toMatch(/"oldest":null/);
      // Its only session gone, the connection ends.
      expect(writer.ended).toBe(true);
    });
  }

  it("never delivers another incarnation, whatever the order of appends, expiries, re-creations and lost notices", async () => {
    const step = fc.oneof(
      fc.record({
        kind: fc.constant("append" as const),
        by: fc.constantFrom("alice" as const, "bob" as const),
      }),
      fc.constant({ kind: "expire" as const }),
      fc.record({ kind: fc.constant("deaf" as const), deaf: fc.boolean() }),
      fc.constant({ kind: "resync" as const }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("single" as const, "mux" as const),
        fc.array(step, { maxLength: 25 }),
        async (framing, steps) => {
          const { store, writer, connection, control, publish, advance, tick, resync } = setup(framing);
          await publish("alice", "alice-0-0");
          const info = await store.getSession("s");
          await connection.addSession("s", 0, { kind: "none" }, info, null, info!.createdAt);
          connection.sessionsAdded();
          // Contents say which incarnation they were appended to: 0 is the reader's.
          let incarnation = 0;
          let n = 1;
          for (const each of steps) {
            tick();
            if (each.kind === "append") {
              const current = await store.getSession("s");
              // Appending to a live session keeps its incarnation (and owner); to a gone one creates the next.
              if (current === null) incarnation++;
              await publish(current?.owner ?? each.by, `i${incarnation}-${n++}`);
            } else if (each.kind === "expire") {
              advance((IDLE_SECONDS + 1) * 1000);
            } else if (each.kind === "deaf") {
              control.deaf = each.deaf;
            } else {
              resync();
            }
            await settle();
          }
          control.deaf = false;
          resync();
          await settle();
          const contents = [...writer.text.matchAll(/"content":"([^"]*)"/g)].map((match) => match[1]!);
          const foreign = contents.filter(
            (content) => !content.startsWith("alice-0") && !content.startsWith("i0-"),
          );
          expect(foreign).toEqual([]);
          connection.close();
        },
      ),
      { numRuns: 60 },
    );
  });
});
