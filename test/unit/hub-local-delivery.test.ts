/**
 * The hub's pushes through a real connection: the local hand-over of a run's batches (whichever of it
 * and the batch's notice comes second adds nothing), a fresh session's reader live at once, a resync
 * after the notification link reconnected, and a batch appended while a reader's read was pending.
 * Store reads are counted: a reader that is live is fed without reading.
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import { Hub } from "../../src/hub/hub.js";
import { createMetrics } from "../../src/metrics.js";
import { StreamConnection } from "../../src/mux/stream-connection.js";
import type { SseWriter } from "../../src/sse/writer.js";
import type { AppendNotice, EventInput, NotificationListener, StreamStore } from "../../src/store/types.js";
import { testMemoryStore } from "../helpers/memory-store.js";

const CATCH_UP_BATCH = 100;
const silent = pino({ level: "silent" });

class FakeWriter {
  writable = true;
  text = "";
  send(frames: string): void {
    this.text += frames;
  }
  end(): void {
    this.writable = false;
  }
  /** The `data` of every event written, in order. */
  get received(): string[] {
    return [...this.text.matchAll(/^data: (.*)$/gm)].map((match) => match[1]!);
  }
}

/**
 * A memory store whose reads are counted (and may be held at a gate), and whose notifier can go deaf
 * (notices dropped, as while the link is down) and be told to resync.
 */
function setup(options: { watchGate?: Promise<void> } = {}) {
  const base = testMemoryStore();
  let readGate: Promise<void> | null = null;
  let listener: NotificationListener | null = null;
  const control = { reads: 0, deaf: false };
  const store: StreamStore = {
    ...base,
    read: async (id, after, count) => {
      control.reads++;
      const result = await base.read(id, after, count);
      if (readGate) await readGate;
      return result;
    },
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
      watch: async (id) => {
        await options.watchGate;
        await base.notifier.watch(id);
      },
      unwatch: (id) => base.notifier.unwatch(id),
    },
  };
  const metrics = createMetrics({ defaultMetrics: false });
  const hub = new Hub(store.notifier, metrics, silent);
  const writer = new FakeWriter();
  const connection = new StreamConnection(
    { hub, store, writer: writer as unknown as SseWriter, metrics, logger: silent, tracker: null },
    {
      framing: "single",
      closeWhenAllEnded: false,
      mergeTokensWhenBehind: false,
      catchUpBatch: CATCH_UP_BATCH,
      maxConcurrentReads: 4,
      retryReadAfterMs: 50,
    },
  );
  const create = (id: string) =>
    base.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
  /** Holds every store read until the returned function is called. */
  const holdReads = () => {
    let release: () => void = () => {};
    readGate = new Promise<void>((resolve) => {
      release = () => {
        readGate = null;
        resolve();
      };
    });
    return release;
  };
  return {
    store: base,
    hub,
    writer,
    connection,
    control,
    create,
    holdReads,
    resync: () => listener?.onResync(),
  };
}

const token = (content: string): EventInput => ({ type: "token", data: { content } });
const data = (...contents: string[]) => contents.map((content) => JSON.stringify({ content }));

/** Appends like a run does and builds the notice the hub's local hand-over receives. */
async function appendLocally(store: StreamStore, id: string, events: EventInput[]): Promise<AppendNotice> {
  const outcome = await store.append(id, events);
  if (outcome.kind !== "appended") throw new Error(`append: ${outcome.kind}`);
  return {
    sessionId: id,
    createdAt: outcome.createdAt,
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
  hub.deliverLocal(notice.sessionId, notice.prevId, () => notice.events, notice.createdAt);
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

describe("Hub local hand-over", () => {
  it("delivers an instance's own batch once, whether it arrives before or after the batch's notice", async () => {
    const { store, hub, writer, connection, control, create } = setup();
    await create("s");
    await connection.addSession("s", 0, { kind: "none" }, await store.getSession("s"));
    await settle();
    expect(control.reads).toBe(1);

    // Local first: handed over before the notice (queued as a microtask by the memory pub/sub) arrives.
    const first = await appendLocally(store, "s", [token("a"), token("b")]);
    hubTakes(hub, first);
    await settle();
    // Notice first: the local hand-over comes late and must add nothing.
    const second = await appendLocally(store, "s", [token("c")]);
    await settle();
    hubTakes(hub, second);
    await settle();

    expect(writer.received).toEqual(data("a", "b", "c"));
    expect(control.reads).toBe(1);
  });

  it("gives a reader that already holds a stream's first events only the rest of the first batch", async () => {
    const { store, hub, writer, connection, control, create } = setup();
    await create("f");
    await connection.addSession("f", 0, { kind: "none" }, await store.getSession("f"));
    await settle();
    const batch = await appendLocally(store, "f", [token("x"), token("y")]);
    await settle();
    expect(writer.received).toEqual(data("x", "y"));
    // The same first batch again (prevId ""), as when a read raced it: nothing new, no re-read.
    hubTakes(hub, batch);
    await settle();
    hubTakes(hub, { ...batch, events: batch.events.slice(1) });
    await settle();
    expect(writer.received).toEqual(data("x", "y"));
    // And the reader is still live: the next batch comes without a read.
    await store.append("f", [token("z")]);
    await settle();
    expect(writer.received).toEqual(data("x", "y", "z"));
    expect(control.reads).toBe(1);
  });

  it("a new session's reader is live at once, and heals by a read if another instance appended before its watch", async () => {
    let openWatch: () => void = () => {};
    const watchGate = new Promise<void>((resolve) => {
      openWatch = resolve;
    });
    const { store, hub, writer, connection, control, create } = setup({ watchGate });
    await create("n");
    const joined = connection.addNewSession("n", 0);

    // The run's first batch, handed over locally while the watch is still pending.
    hubTakes(hub, await appendLocally(store, "n", [token("1")]));
    expect(writer.received).toEqual(data("1"));
    // Another instance appends before the watch is in place: its notice is never seen here.
    await store.append("n", [token("2")]);
    await settle();
    openWatch();
    await joined;
    expect(control.reads).toBe(0);
    // The next notice does not follow the reader's position: it reads what it missed, then goes on.
    await store.append("n", [token("3")]);
    await settle();
    await store.append("n", [token("4")]);
    await settle();

    expect(writer.received).toEqual(data("1", "2", "3", "4"));
    expect(control.reads).toBe(1);
  });
});

describe("a connection's readers and the hub", () => {
  it("re-read what they missed when the notification link resyncs, then go on live", async () => {
    const { store, writer, connection, control, create, resync } = setup();
    await create("r");
    await connection.addSession("r", 0, { kind: "none" }, await store.getSession("r"));
    await settle();
    control.deaf = true;
    await store.append("r", [token("missed")]);
    await settle();
    expect(writer.received).toEqual([]);
    control.deaf = false;
    resync();
    await settle();
    expect(writer.received).toEqual(data("missed"));
    expect(control.reads).toBe(2);
    await store.append("r", [token("live")]);
    await settle();
    expect(writer.received).toEqual(data("missed", "live"));
    expect(control.reads).toBe(2);
  });

  it("read once more when a batch is appended while their read is pending, instead of going live short of it", async () => {
    const { store, writer, connection, control, create, holdReads } = setup();
    await create("p");
    await store.append("p", [token("old")]);
    const release = holdReads();
    await connection.addSession("p", 0, { kind: "none" }, await store.getSession("p"));
    await settle();
    // The read has taken its snapshot of the stream; this batch is not in it, and its notice is
    // pushed to a reader that is reading: it must not be dropped.
    await store.append("p", [token("during")]);
    await settle();
    release();
    await settle();
    expect(writer.received).toEqual(data("old", "during"));
    expect(control.reads).toBe(2);
    await store.append("p", [token("after")]);
    await settle();
    expect(writer.received).toEqual(data("old", "during", "after"));
    expect(control.reads).toBe(2);
  });

  it("fall behind once while the socket is full, whatever comes meanwhile, and catch up with one read on drain", async () => {
    const { store, writer, connection, control, create } = setup();
    await create("b");
    await connection.addSession("b", 0, { kind: "none" }, await store.getSession("b"));
    await settle();
    writer.writable = false;
    for (const content of ["1", "2", "3"]) {
      await store.append("b", [token(content)]);
      await settle();
    }
    expect(writer.received).toEqual([]);
    expect(control.reads).toBe(1);
    writer.writable = true;
    connection.onDrain();
    await settle();
    expect(writer.received).toEqual(data("1", "2", "3"));
    expect(control.reads).toBe(2);
  });
});
