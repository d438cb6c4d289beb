import pino from "pino";
import { describe, expect, it } from "vitest";
import { Hub } from "../../src/hub/hub.js";
import type { Reader } from "../../src/hub/reader.js";
import { createMetrics } from "../../src/metrics.js";
import type { AppendNotice, EventInput, StoredEvent, StreamStore } from "../../src/store/types.js";
import { testMemoryStore } from "../helpers/memory-store.js";

const CATCH_UP_BATCH = 100;

function setup() {
  const store = testMemoryStore();
  const hub = new Hub(
    store,
    { catchUpBatch: CATCH_UP_BATCH },
    createMetrics({ defaultMetrics: false }),
    pino({ level: "silent" }),
  );
  return { store, hub };
}

/** A reader that records what it is handed and catches up from the store at once when asked. */
class RecordingReader implements Reader {
  position: string | null = null;
  state: "live" | "behind" = "behind";
  reading = false;
  dirty = false;
  gapChecked = true;
  readonly received: string[] = [];
  catchUps = 0;

  constructor(
    readonly sessionId: string,
    private readonly hub: Hub,
  ) {}

  canTakeLive(): boolean {
    return true;
  }

  deliver(events: readonly StoredEvent[]): void {
    for (const event of events) {
      this.received.push(event.data);
      this.position = event.id;
    }
  }

  holdReadAhead(): boolean {
    return true;
  }

  releaseReadAhead(): void {}

  requestCatchUp(): void {
    this.catchUps++;
    void (async () => {
      while (await this.hub.readBatch(this)) {}
    })();
  }
}

const token = (content: string): EventInput => ({ type: "token", data: { content } });

/** Appends like a run does and builds the notice the hub's local hand-over receives. */
async function appendLocally(store: StreamStore, id: string, events: EventInput[]): Promise<AppendNotice> {
  const outcome = await store.append(id, events);
  if (outcome.kind !== "appended") throw new Error(`append: ${outcome.kind}`);
  return {
    sessionId: id,
    prevId: outcome.prevId,
    events: events.map((event, i) => ({
      id: outcome.ids[i]!,
      type: event.type,
      data: JSON.stringify(event.data),
    })),
  };
}

/** The local hand-over of a batch, as the run manager makes it. */
function hubTakes(hub: Hub, notice: AppendNotice): void {
  hub.deliverLocal(notice.sessionId, notice.prevId, () => notice.events);
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

describe("Hub local hand-over", () => {
  it("delivers an instance's own batch once, whether it arrives before or after the batch's notice", async () => {
    const { store, hub } = setup();
    await store.createSession({ id: "s", model: null, metadata: {}, owner: null, createdAt: Date.now() });
    const reader = new RecordingReader("s", hub);
    await hub.join(reader);
    await settle();
    expect(reader.state).toBe("live");

    // Local first: handed over before the notice (queued as a microtask by the memory pub/sub) arrives.
    const first = await appendLocally(store, "s", [token("a"), token("b")]);
    hubTakes(hub, first);
    await settle();
    // Notice first: the local hand-over comes late and must add nothing.
    const second = await appendLocally(store, "s", [token("c")]);
    await settle();
    hubTakes(hub, second);
    await settle();

    expect(reader.received).toEqual(['{"content":"a"}', '{"content":"b"}', '{"content":"c"}']);
    expect(reader.catchUps).toBe(1);
  });

  it("gives a reader that already holds a stream's first events only the rest of the first batch", async () => {
    const { store, hub } = setup();
    await store.createSession({ id: "f", model: null, metadata: {}, owner: null, createdAt: Date.now() });
    const reader = new RecordingReader("f", hub);
    await hub.join(reader);
    await settle();
    const batch = await appendLocally(store, "f", [token("x"), token("y")]);
    await settle();
    expect(reader.received).toEqual(['{"content":"x"}', '{"content":"y"}']);
    // The same first batch again (prevId ""), as when a read raced it: nothing new, no re-read.
    hubTakes(hub, batch);
    await settle();
    expect(reader.received).toEqual(['{"content":"x"}', '{"content":"y"}']);
    expect(reader.state).toBe("live");
    expect(reader.catchUps).toBe(1);
  });

  it("a new session's reader is live at once, and heals by a read if another instance appended before its watch", async () => {
    const { store } = setup();
    let openWatch: () => void = () => {};
    const watchGate = new Promise<void>((resolve) => {
      openWatch = resolve;
    });
    const slowWatch: StreamStore = {
      ...store,
      notifier: {
        setListener: (listener) => store.notifier.setListener(listener),
        watch: async (id) => {
          await watchGate;
          await store.notifier.watch(id);
        },
        unwatch: (id) => store.notifier.unwatch(id),
      },
    };
    const hub = new Hub(
      slowWatch,
      { catchUpBatch: CATCH_UP_BATCH },
      createMetrics({ defaultMetrics: false }),
      pino({ level: "silent" }),
    );
    await store.createSession({ id: "n", model: null, metadata: {}, owner: null, createdAt: Date.now() });
    const reader = new RecordingReader("n", hub);
    const joined = hub.joinNew(reader);
    expect(reader.state).toBe("live");

    // The run's first batch, handed over locally while the watch is still pending.
    hubTakes(hub, await appendLocally(store, "n", [token("1")]));
    // Another instance appends before the watch is in place: its notice is never seen here.
    await store.append("n", [token("2")]);
    await settle();
    openWatch();
    await joined;
    // The next notice does not follow the reader's position: it reads what it missed, then goes on.
    await store.append("n", [token("3")]);
    await settle();

    expect(reader.received).toEqual(['{"content":"1"}', '{"content":"2"}', '{"content":"3"}']);
    expect(reader.catchUps).toBe(1);
  });
});
