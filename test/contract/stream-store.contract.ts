/**
 * The StreamStore contract: one suite that every store (memory, Redis) must pass, so the hub, the
 * runner and the HTTP layer can rely on the same semantics whichever store backs them.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { comparePositions } from "../../src/store/positions.js";
import { ownerFeedId, type RetentionOptions } from "../../src/store/session-fields.js";
import {
  type AppendNotice,
  type EventInput,
  LIFECYCLE_FEED,
  type NewSession,
  type StreamStore,
} from "../../src/store/types.js";

export interface StoreHandle {
  store: StreamStore;
  close(): Promise<void>;
}

/** Builds a fresh store (its own key space); `retention` overrides the defaults. */
export type MakeStore = (retention?: Partial<RetentionOptions>) => Promise<StoreHandle>;

export const DEFAULT_RETENTION: RetentionOptions = {
  maxEventsPerSession: 10_000,
  lifecycleMaxEvents: 10_000,
  endedSessionTtlSeconds: 86_400,
  idleSessionTtlSeconds: 86_400,
  requestRecordTtlSeconds: 600,
};

const POSITION = /^\d+-\d+$/;
const WAIT_MS = 5_000;

export function uniqueId(label = "s"): string {
  return `${label}_${randomBytes(6).toString("base64url")}`;
}

export function newSession(id = uniqueId(), extra: Partial<NewSession> = {}): NewSession {
  return { id, model: "m-1", metadata: { team: "a", n: 1 }, owner: null, createdAt: Date.now(), ...extra };
}

function tokens(n: number, from = 0): EventInput[] {
  return Array.from({ length: n }, (_, i) => ({ type: "token", data: { content: `t${from + i}` } }));
}

function expectGrowing(ids: readonly string[]): void {
  for (const id of ids) expect(id).toMatch(POSITION);
  for (let i = 1; i < ids.length; i++) expect(comparePositions(ids[i - 1]!, ids[i]!)).toBeLessThan(0);
}

async function until<T>(probe: () => T | undefined, what: string, timeoutMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function runStreamStoreContract(name: string, makeStore: MakeStore): void {
  describe(`StreamStore contract: ${name}`, () => {
    let handle: StoreHandle;
    let store: StreamStore;
    const notices: AppendNotice[] = [];
    let resyncs = 0;

    beforeAll(async () => {
      handle = await makeStore();
      store = handle.store;
      store.notifier.setListener({
        onAppend: (notice) => notices.push(notice),
        onResync: () => {
          resyncs += 1;
        },
      });
    });
    afterAll(async () => {
      await handle?.close();
    });

    async function created(extra: Partial<NewSession> = {}): Promise<string> {
      const session = newSession(uniqueId(), extra);
      expect(await store.createSession(session)).toBe(true);
      return session.id;
    }

    it("is ready", () => {
      expect(store.isReady()).toBe(true);
    });

    describe("sessions", () => {
      it("createSession is true for a new id and false when the id is taken", async () => {
        const session = newSession();
        expect(await store.createSession(session)).toBe(true);
        expect(await store.createSession(session)).toBe(false);
        expect(await store.createSession({ ...session, model: "other" })).toBe(false);
        // The first creation wins: the second did not overwrite anything.
        expect((await store.getSession(session.id))?.model).toBe("m-1");
      });

      it("getSession returns every field of a new session", async () => {
        const createdAt = Date.now() - 1234;
        const session = newSession(uniqueId(), {
          model: "gpt-x",
          metadata: { user: "u1", nested: { a: [1, 2] } },
          owner: "instance-1",
          createdAt,
        });
        await store.createSession(session);
        expect(await store.getSession(session.id)).toEqual({
          id: session.id,
          status: "running",
          createdAt,
          model: "gpt-x",
          metadata: { user: "u1", nested: { a: [1, 2] } },
          owner: "instance-1",
          lastEventId: null,
          terminalId: null,
        });
      });

      it("a session without model or owner reads back as null", async () => {
        const id = await created({ model: null, owner: null, metadata: {} });
        const info = await store.getSession(id);
        expect(info?.model).toBeNull();
        expect(info?.owner).toBeNull();
        expect(info?.metadata).toEqual({});
      });

      it("getSession of an unknown id is null", async () => {
        expect(await store.getSession(uniqueId("nobody"))).toBeNull();
      });
    });

    describe("append and read", () => {
      it("appends with growing <ms>-<seq> ids, and getSession follows the last one", async () => {
        const id = await created();
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const outcome = await store.append(id, tokens(3, i * 3));
          expect(outcome).toMatchObject({ kind: "appended", ended: false, created: false });
          if (outcome.kind !== "appended") throw new Error("not appended");
          expect(outcome.ids).toHaveLength(3);
          ids.push(...outcome.ids);
        }
        expectGrowing(ids);
        const info = await store.getSession(id);
        expect(info?.status).toBe("running");
        expect(info?.lastEventId).toBe(ids[ids.length - 1]);
        expect(info?.terminalId).toBeNull();
      });

      it("reads from the start (null), strictly after a position, and at most count", async () => {
        const id = await created();
        const outcome = await store.append(id, tokens(10));
        if (outcome.kind !== "appended") throw new Error("not appended");
        const ids = outcome.ids;

        const all = await store.read(id, null, 100);
        expect(all.gap).toBeNull();
        expect(all.events.map((e) => e.id)).toEqual(ids);
        expect(all.events.map((e) => e.type)).toEqual(Array(10).fill("token"));
        expect(all.events.map((e) => JSON.parse(e.data))).toEqual(tokens(10).map((e) => e.data));

        const after3 = await store.read(id, ids[3]!, 100);
        expect(after3.gap).toBeNull();
        expect(after3.events.map((e) => e.id)).toEqual(ids.slice(4));

        const limited = await store.read(id, ids[1]!, 3);
        expect(limited.events.map((e) => e.id)).toEqual(ids.slice(2, 5));

        const firstTwo = await store.read(id, null, 2);
        expect(firstTwo.events.map((e) => e.id)).toEqual(ids.slice(0, 2));

        const atEnd = await store.read(id, ids[9]!, 100);
        expect(atEnd).toEqual({ events: [], gap: null, createdAt: expect.any(Number) });
      });

      it("reads an empty session and an unknown session as no events and no gap", async () => {
        const id = await created();
        const { createdAt } = (await store.getSession(id))!;
        expect(await store.read(id, null, 10)).toEqual({ events: [], gap: null, createdAt });
        expect(await store.read(uniqueId("nobody"), null, 10)).toEqual({
          events: [],
          gap: null,
          createdAt: null,
        });
      });

      it("a read and a notice say which incarnation of the id the events belong to (its createdAt)", async () => {
        const id = uniqueId("incarnation");
        const createdAt = 1_700_000_000_123;
        const outcome = await store.append(id, tokens(1), {
          createIfMissing: { id, model: null, metadata: {}, owner: "alice", createdAt },
        });
        expect(outcome).toMatchObject({ kind: "appended", created: true, createdAt });
        expect((await store.read(id, null, 10)).createdAt).toBe(createdAt);
        await store.notifier.watch(id);
        try {
          await store.append(id, tokens(1));
          const deadline = Date.now() + 5_000;
          while (!notices.some((notice) => notice.sessionId === id) && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          expect(notices.find((notice) => notice.sessionId === id)?.createdAt).toBe(createdAt);
        } finally {
          store.notifier.unwatch(id);
        }
      });

      it("an append reports the stream's previous last position (as its notice does): empty first", async () => {
        const id = await created();
        const first = await store.append(id, tokens(2));
        expect(first).toMatchObject({ kind: "appended", prevId: "" });
        const second = await store.append(id, tokens(1));
        const firstIds = first.kind === "appended" ? first.ids : [];
        expect(second).toMatchObject({ kind: "appended", prevId: firstIds[1] });
        expect(await store.append(id, [])).toMatchObject({
          kind: "appended",
          prevId: second.kind === "appended" ? second.ids[0] : "?",
        });
      });

      it("appending to a missing session without createIfMissing is {kind: missing}", async () => {
        const id = uniqueId("missing");
        expect(await store.append(id, tokens(1))).toEqual({ kind: "missing" });
        expect(await store.getSession(id)).toBeNull();
        expect((await store.read(id, null, 10)).events).toEqual([]);
      });

      it("createIfMissing creates the session on the first append only", async () => {
        const session = newSession(uniqueId("producer"), { model: "prod", metadata: { source: "x" } });
        const first = await store.append(session.id, tokens(2), { createIfMissing: session });
        expect(first).toMatchObject({ kind: "appended", created: true, ended: false });
        const info = await store.getSession(session.id);
        expect(info).toMatchObject({
          id: session.id,
          status: "running",
          model: "prod",
          metadata: { source: "x" },
        });
        const second = await store.append(session.id, tokens(1), {
          createIfMissing: { ...session, model: "changed" },
        });
        expect(second).toMatchObject({ kind: "appended", created: false });
        expect((await store.getSession(session.id))?.model).toBe("prod");
        expect((await store.read(session.id, null, 10)).events).toHaveLength(3);
      });

      it("a batch ending in a terminal event ends the session atomically; later appends are {kind: ended}", async () => {
        const id = await created();
        const batch: EventInput[] = [
          { type: "token", data: { content: "a" } },
          { type: "token", data: { content: "b" } },
          { type: "done", data: { session_id: id, total_tokens: 2, finish_reason: "stop" } },
        ];
        const outcome = await store.append(id, batch);
        expect(outcome).toMatchObject({ kind: "appended", ended: true });
        if (outcome.kind !== "appended") throw new Error("not appended");
        expect(outcome.ids).toHaveLength(3);
        expectGrowing(outcome.ids);

        const info = await store.getSession(id);
        expect(info?.status).toBe("done");
        expect(info?.terminalId).toBe(outcome.ids[2]);
        expect(info?.lastEventId).toBe(outcome.ids[2]);

        expect(await store.append(id, tokens(1))).toEqual({ kind: "ended", status: "done" });
        expect(await store.append(id, [{ type: "error", data: { code: "x", message: "y" } }])).toEqual({
          kind: "ended",
          status: "done",
        });
        // createIfMissing does not resurrect an ended session.
        expect(await store.append(id, tokens(1), { createIfMissing: newSession(id) })).toEqual({
          kind: "ended",
          status: "done",
        });
        const events = (await store.read(id, null, 100)).events;
        expect(events.map((e) => e.type)).toEqual(["token", "token", "done"]);
      });

      it.each([
        ["error", { code: "upstream_error", message: "boom" }],
        ["cancelled", { reason: "requested" }],
      ] as const)("a %s event is terminal too", async (type, data) => {
        const id = await created();
        const outcome = await store.append(id, [{ type, data }]);
        expect(outcome).toMatchObject({ kind: "appended", ended: true });
        expect((await store.getSession(id))?.status).toBe(type);
        expect(await store.append(id, tokens(1))).toEqual({ kind: "ended", status: type });
      });

      it("an empty batch appends nothing but is accepted", async () => {
        const id = await created();
        expect(await store.append(id, [])).toEqual({
          kind: "appended",
          ids: [],
          prevId: "",
          ended: false,
          created: false,
          owner: null,
          createdAt: expect.any(Number),
          replayed: false,
        });
        expect((await store.read(id, null, 10)).events).toEqual([]);
        expect((await store.getSession(id))?.lastEventId).toBeNull();
      });

      it("a read hands out its own event objects: what a reader attaches to them is not kept", async () => {
        const id = await created();
        await store.append(id, tokens(2));
        const first = await store.read(id, null, 10);
        for (const event of first.events) Object.assign(event, { cached: "frame" });
        const again = await store.read(id, null, 10);
        expect(again.events.map((event) => Object.keys(event).sort())).toEqual([
          ["data", "id", "type"],
          ["data", "id", "type"],
        ]);
      });

      it("event data round-trips byte-exact", async () => {
        const id = await created();
        const data = {
          newline: "line1\nline2\n\nline4",
          cr: "a\rb\r\nc",
          quotes: `"double" 'single' \`back\``,
          backslash: "C:\\path\\to\\file \\n not a newline",
          tab: "a\tb",
          emoji: "🚀👩‍👩‍👧‍👦 ✓ é 中文",
          separators: "x\u2028y\u2029z",
          control: "\u0000\u0001\u001f",
          loneSurrogate: "\ud800",
          nested: { list: [1, "two", null, true, { deep: "\n" }], empty: {} },
          number: 1.5e-7,
          big: 9007199254740991,
        };
        const outcome = await store.append(id, [{ type: "note", data }]);
        if (outcome.kind !== "appended") throw new Error("not appended");
        const [event] = (await store.read(id, null, 10)).events;
        expect(event?.type).toBe("note");
        expect(event?.data).toBe(JSON.stringify(data));
        expect(event?.data).not.toContain("\n");
        expect(event?.data).not.toContain("\r");
        expect(JSON.parse(event!.data)).toEqual(data);
      });
    });

    describe("writer idempotency", () => {
      it("applies each writer batch once and in order", async () => {
        const id = await created();
        const writer = { writerId: "w-1", seq: 1 };
        const first = await store.append(id, tokens(2), { writer });
        expect(first).toMatchObject({ kind: "appended", replayed: false });
        // The same batch re-sent after a lost reply: its first reply again, nothing written.
        expect(await store.append(id, tokens(2), { writer })).toEqual({ ...first, replayed: true });
        // A batch that overtook a lost one.
        expect(await store.append(id, tokens(1), { writer: { writerId: "w-1", seq: 3 } })).toEqual({
          kind: "out_of_order",
        });
        expect(await store.append(id, tokens(1), { writer: { writerId: "w-1", seq: 2 } })).toMatchObject({
          kind: "appended",
        });
        expect(await store.append(id, tokens(1), { writer: { writerId: "w-1", seq: 1 } })).toEqual({
          kind: "duplicate",
        });
        expect(await store.append(id, tokens(1), { writer: { writerId: "w-1", seq: 3 } })).toMatchObject({
          kind: "appended",
        });
        // Writers are independent of each other.
        expect(await store.append(id, tokens(1), { writer: { writerId: "w-2", seq: 1 } })).toMatchObject({
          kind: "appended",
        });
        expect((await store.read(id, null, 100)).events).toHaveLength(2 + 1 + 1 + 1);
      });

      it("a duplicate batch does not move lastEventId", async () => {
        const id = await created();
        const first = await store.append(id, tokens(1), { writer: { writerId: "w", seq: 1 } });
        if (first.kind !== "appended") throw new Error("not appended");
        await store.append(id, tokens(1), { writer: { writerId: "w", seq: 1 } });
        expect((await store.getSession(id))?.lastEventId).toBe(first.ids[0]);
      });
    });

    describe("leases", () => {
      it("requireNoLease is refused while a lease is held, and appends once it is released", async () => {
        const id = await created();
        await store.holdLease(id, "instance-a", 60_000);
        const events: EventInput[] = [{ type: "error", data: { code: "interrupted", message: "gone" } }];
        expect(await store.append(id, events, { requireNoLease: true })).toEqual({ kind: "leased" });
        // Appends without the flag (the run itself) go on.
        expect(await store.append(id, tokens(1))).toMatchObject({ kind: "appended" });
        expect((await store.getSession(id))?.status).toBe("running");

        await store.releaseLease(id);
        expect(await store.append(id, events, { requireNoLease: true })).toMatchObject({
          kind: "appended",
          ended: true,
        });
        expect((await store.getSession(id))?.status).toBe("error");
      });

      it("requireNoLease appends after the lease expired by itself", async () => {
        const id = await created();
        await store.holdLease(id, "instance-a", 30);
        await new Promise((resolve) => setTimeout(resolve, 80));
        expect(await store.append(id, tokens(1), { requireNoLease: true })).toMatchObject({
          kind: "appended",
        });
      });

      it("expiredLeases lists sessions whose lease index entry is older than now", async () => {
        const id = await created();
        const other = await created();
        await store.holdLease(id, "instance-a", 1_000);
        await store.holdLease(other, "instance-b", 600_000);
        const now = Date.now();
        expect(await store.expiredLeases(now - 60_000, 1000)).not.toContain(id);
        const later = await store.expiredLeases(now + 10_000, 1000);
        expect(later).toContain(id);
        expect(later).not.toContain(other);
        expect(await store.expiredLeases(now + 700_000, 1000)).toEqual(expect.arrayContaining([id, other]));
        // A renewal moves the entry.
        await store.holdLease(id, "instance-a", 600_000);
        expect(await store.expiredLeases(now + 10_000, 1000)).not.toContain(id);
        // forgetLease drops it from the index; releaseLease too.
        await store.forgetLease(id);
        expect(await store.expiredLeases(now + 700_000, 1000)).not.toContain(id);
        await store.releaseLease(other);
        expect(await store.expiredLeases(now + 700_000, 1000)).not.toContain(other);
      });

      it("expiredLeases honours its limit", async () => {
        const ids = [await created(), await created(), await created()];
        for (const id of ids) await store.holdLease(id, "x", 1);
        const expired = await store.expiredLeases(Date.now() + 60_000, 2);
        expect(expired.length).toBeLessThanOrEqual(2);
        for (const id of ids) await store.releaseLease(id);
      });

      it("a terminal append drops the lease", async () => {
        const id = await created();
        await store.holdLease(id, "instance-a", 60_000);
        await store.append(id, [
          { type: "done", data: { session_id: id, total_tokens: 0, finish_reason: "stop" } },
        ]);
        // The session is over: an interrupted-run sweep finds it ended, not leased.
        expect(
          await store.append(id, [{ type: "error", data: { code: "interrupted", message: "" } }], {
            requireNoLease: true,
          }),
        ).toEqual({ kind: "ended", status: "done" });
      });
    });

    describe("notifier", () => {
      it("announces each append with its previous position and its events", async () => {
        const id = await created();
        await store.notifier.watch(id);
        try {
          const mine = () => notices.filter((n) => n.sessionId === id);
          const first = await store.append(id, [
            { type: "token", data: { content: "hi\nthere" } },
            { type: "usage", data: { total_tokens: 1 } },
          ]);
          if (first.kind !== "appended") throw new Error("not appended");
          const n1 = await until(() => mine()[0], "the first notice");
          expect(n1).toEqual({
            sessionId: id,
            createdAt: first.createdAt,
            prevId: "",
            events: [
              { id: first.ids[0], type: "token", data: JSON.stringify({ content: "hi\nthere" }) },
              { id: first.ids[1], type: "usage", data: JSON.stringify({ total_tokens: 1 }) },
            ],
          });

          const second = await store.append(id, [
            { type: "done", data: { session_id: id, total_tokens: 1, finish_reason: "stop" } },
          ]);
          if (second.kind !== "appended") throw new Error("not appended");
          const n2 = await until(() => mine()[1], "the second notice");
          expect(n2.prevId).toBe(first.ids[1]);
          expect(n2.events.map((e) => [e.id, e.type])).toEqual([[second.ids[0], "done"]]);
          // Rejected appends announce nothing.
          await store.append(id, tokens(1));
          await new Promise((resolve) => setTimeout(resolve, 50));
          expect(mine()).toHaveLength(2);
        } finally {
          store.notifier.unwatch(id);
        }
      });

      it("stops announcing after unwatch, and never announces unwatched sessions", async () => {
        const watched = await created();
        const unwatched = await created();
        await store.notifier.watch(watched);
        await store.append(unwatched, tokens(1));
        await store.append(watched, tokens(1));
        await until(() => notices.find((n) => n.sessionId === watched), "a notice");
        store.notifier.unwatch(watched);
        await store.append(watched, tokens(1));
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(notices.filter((n) => n.sessionId === watched)).toHaveLength(1);
        expect(notices.filter((n) => n.sessionId === unwatched)).toHaveLength(0);
        expect(resyncs).toBe(0);
      });

      it("the lifecycle feed @sessions gets created and ended events", async () => {
        const session = newSession(uniqueId("life"), { model: "feed-model", metadata: { tag: "lc" } });
        await store.createSession(session);
        await store.append(session.id, [{ type: "cancelled", data: { reason: "requested" } }]);
        const producer = newSession(uniqueId("life-producer"), { model: null, metadata: {} });
        await store.append(producer.id, [{ type: "error", data: { code: "x", message: "y" } }], {
          createIfMissing: producer,
        });

        const feed = await store.read(LIFECYCLE_FEED, null, 1000);
        expectGrowing(feed.events.map((e) => e.id));
        const about = (sid: string) =>
          feed.events
            .filter((e) => (JSON.parse(e.data) as { id: string }).id === sid)
            .map((e) => ({
              type: e.type,
              data: JSON.parse(e.data) as unknown,
            }));
        expect(about(session.id)).toEqual([
          {
            type: "created",
            data: {
              id: session.id,
              model: "feed-model",
              metadata: { tag: "lc" },
              createdAt: new Date(session.createdAt).toISOString(),
            },
          },
          { type: "ended", data: { id: session.id, status: "cancelled" } },
        ]);
        expect(about(producer.id).map((e) => e.type)).toEqual(["created", "ended"]);
        expect(about(producer.id)[1]?.data).toEqual({ id: producer.id, status: "error" });
        // A failed creation announces nothing.
        await store.createSession(session);
        const again = await store.read(LIFECYCLE_FEED, null, 1000);
        expect(
          again.events.filter((e) => e.type === "created" && JSON.parse(e.data).id === session.id),
        ).toHaveLength(1);
      });

      it("a creation is on the shared and the owner's lifecycle feeds once createSession resolves", async () => {
        const session = newSession(uniqueId("life-now"), { owner: "feed-owner" });
        expect(await store.createSession(session)).toBe(true);
        for (const feed of [LIFECYCLE_FEED, ownerFeedId("feed-owner")]) {
          const entries = (await store.read(feed, null, 100_000)).events;
          expect(entries.some((e) => e.type === "created" && JSON.parse(e.data).id === session.id)).toBe(
            true,
          );
        }
      });

      it("the lifecycle feed is announced like any stream", async () => {
        await store.notifier.watch(LIFECYCLE_FEED);
        try {
          const id = await created();
          const notice = await until(
            () =>
              notices.find(
                (n) => n.sessionId === LIFECYCLE_FEED && n.events.some((e) => JSON.parse(e.data).id === id),
              ),
            "a lifecycle notice",
          );
          expect(notice.events.map((e) => e.type)).toEqual(["created"]);
        } finally {
          store.notifier.unwatch(LIFECYCLE_FEED);
        }
      });
    });

    describe("compaction", () => {
      let small: StoreHandle;
      beforeAll(async () => {
        small = await makeStore({ maxEventsPerSession: 10, lifecycleMaxEvents: 10 });
      });
      afterAll(async () => {
        await small?.close();
      });

      async function fill(id: string, events: readonly EventInput[]): Promise<string[]> {
        const ids: string[] = [];
        // Several batches, as a run writes them (Redis trims in chunks, per batch).
        for (let i = 0; i < events.length; i += 50) {
          const outcome = await small.store.append(id, events.slice(i, i + 50));
          if (outcome.kind !== "appended") throw new Error(`append: ${outcome.kind}`);
          ids.push(...outcome.ids);
        }
        return ids;
      }

      const textOf = (events: readonly { type: string; data: string }[]) =>
        events
          .map((e) => {
            const data = JSON.parse(e.data) as { content?: string };
            return e.type === "snapshot" || e.type === "token" ? (data.content ?? "") : "";
          })
          .join("");

      it("a reader behind what was folded gets the snapshot, then the kept events: the whole text, no gap", async () => {
        const id = uniqueId("fold");
        await small.store.createSession(newSession(id));
        const all = tokens(500);
        const ids = await fill(id, all);
        const wholeText = all.map((e) => e.data.content).join("");

        const fromStart = await small.store.read(id, null, 1000);
        expect(fromStart.gap).toBeNull();
        const [snapshot, ...kept] = fromStart.events;
        expect(snapshot?.type).toBe("snapshot");
        expect(kept.length).toBeGreaterThanOrEqual(10);
        expect(kept.length).toBeLessThan(500);
        // What is kept is the newest tail, in order; the snapshot stands for everything before it.
        expect(kept.map((e) => e.id)).toEqual(ids.slice(ids.length - kept.length));
        expect(snapshot?.id).toBe(ids[ids.length - kept.length - 1]);
        expect(textOf(fromStart.events)).toBe(wholeText);
        expect(JSON.parse(snapshot!.data)).toEqual({
          content: all
            .slice(0, 500 - kept.length)
            .map((e) => e.data.content)
            .join(""),
          reasoning: "",
          refusal: "",
          tool_calls: [],
          usage: null,
          folded: { token: 500 - kept.length },
        });

        // A reader part-way through the folded events gets the snapshot too (it replaces what it had).
        const behind = await small.store.read(id, ids[3]!, 5);
        expect(behind.gap).toBeNull();
        expect(behind.events[0]).toEqual(snapshot);
        expect(behind.events.slice(1).map((e) => e.id)).toEqual(kept.slice(0, 5).map((e) => e.id));

        // At or after the last folded event the reader missed nothing: no snapshot.
        const atEdge = await small.store.read(id, snapshot!.id, 5);
        expect(atEdge).toEqual({ gap: null, events: kept.slice(0, 5), createdAt: expect.any(Number) });
        const retained = await small.store.read(id, kept[0]!.id, 5);
        expect(retained.events.map((e) => e.id)).toEqual(kept.slice(1, 6).map((e) => e.id));
        // Compaction keeps the session's metadata.
        expect((await small.store.getSession(id))?.lastEventId).toBe(ids[ids.length - 1]);
      });

      it("folds reasoning, refusal, tool calls (streaming and complete) and the last usage", async () => {
        const id = uniqueId("fold-all");
        await small.store.createSession(newSession(id));
        const events: EventInput[] = [
          { type: "start", data: { model: "m", createdAt: "2026-01-01T00:00:00.000Z" } },
          { type: "reasoning", data: { content: "Let me " } },
          { type: "reasoning", data: { content: "think." } },
          { type: "tool_call_delta", data: { index: 0, id: "call_1", name: "get_weather", arguments: "" } },
          { type: "tool_call_delta", data: { index: 0, arguments: '{"city":' } },
          { type: "tool_call_delta", data: { index: 0, arguments: '"Paris"}' } },
          {
            type: "tool_call",
            data: { index: 0, id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
          },
          { type: "tool_call_delta", data: { index: 1, id: "call_2", name: "get_time", arguments: '{"tz"' } },
          { type: "usage", data: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } },
          { type: "refusal", data: { content: "I can't " } },
          { type: "refusal", data: { content: "do that." } },
          { type: "note", data: { anything: true } },
          { type: "token", data: { content: 'Hi / "there" \u00e9\n' } },
        ];
        await fill(id, [...events, ...tokens(200)]);
        const snapshot = (await small.store.read(id, null, 1)).events[0]!;
        expect(snapshot.type).toBe("snapshot");
        const data = JSON.parse(snapshot.data) as Record<string, unknown>;
        expect(data).toMatchObject({
          reasoning: "Let me think.",
          refusal: "I can't do that.",
          tool_calls: [
            { index: 0, id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
            { index: 1, id: "call_2", name: "get_time", arguments: '{"tz"' },
          ],
          usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
        });
        expect((data.content as string).startsWith('Hi / "there" \u00e9\nt0t1')).toBe(true);
        expect(data.folded).toMatchObject({
          start: 1,
          reasoning: 2,
          tool_call_delta: 4,
          tool_call: 1,
          usage: 1,
          refusal: 2,
          note: 1,
        });
      });

      it("text whose surrogate pair is split over two deltas joins up again in the snapshot", async () => {
        const id = uniqueId("fold-pair");
        await small.store.createSession(newSession(id));
        const emoji = "\u{1F600}";
        await fill(id, [
          { type: "token", data: { content: emoji.slice(0, 1) } },
          { type: "token", data: { content: emoji.slice(1) } },
          ...tokens(100),
        ]);
        const snapshot = (await small.store.read(id, null, 1)).events[0]!;
        expect((JSON.parse(snapshot.data) as { content: string }).content.startsWith(`${emoji}t0`)).toBe(
          true,
        );
      });

      it("a session that was never trimmed has no snapshot", async () => {
        const id = uniqueId("nofold");
        await small.store.createSession(newSession(id));
        const ids = await fill(id, tokens(8));
        expect((await small.store.read(id, null, 100)).events.map((e) => e.id)).toEqual(ids);
        const result = await small.store.read(id, ids[0]!, 100);
        expect(result.gap).toBeNull();
        expect(result.events.map((e) => e.id)).toEqual(ids.slice(1));
      });

      it("the lifecycle feed is trimmed without a snapshot: a reader behind it is told of the gap", async () => {
        const first = newSession(uniqueId("feed-first"));
        await small.store.createSession(first);
        const feedBefore = (await small.store.read(LIFECYCLE_FEED, null, 1000)).events;
        const firstEntry = feedBefore.find((e) => JSON.parse(e.data).id === first.id)!;
        for (let i = 0; i < 300; i++) await small.store.createSession(newSession(uniqueId("feed")));
        const result = await small.store.read(LIFECYCLE_FEED, firstEntry.id, 5);
        expect(result.gap).toMatchObject({ requested: firstEntry.id });
        expect(result.events.every((e) => e.type === "created")).toBe(true);
        expect((await small.store.read(LIFECYCLE_FEED, null, 1)).events[0]?.type).toBe("created");
      });
    });

    describe("exactly once", () => {
      it("an append repeated with its request id answers its first reply and writes once", async () => {
        const id = await created();
        const first = await store.append(id, tokens(2), { requestId: "req-1" });
        expect(first).toMatchObject({ kind: "appended", replayed: false });
        const again = await store.append(id, tokens(2), { requestId: "req-1" });
        expect(again).toEqual({ ...first, replayed: true });
        expect((await store.read(id, null, 100)).events).toHaveLength(2);
        // Another request id is another append.
        expect(await store.append(id, tokens(1), { requestId: "req-2" })).toMatchObject({ replayed: false });
        expect((await store.read(id, null, 100)).events).toHaveLength(3);
      });

      it("the append that creates a session reports its creator as the owner, in the same reply", async () => {
        const session = newSession(uniqueId("owned"), { owner: "subject-1" });
        const end = [
          { type: "done", data: { session_id: session.id, total_tokens: 0, finish_reason: "stop" } },
        ];
        expect(await store.append(session.id, end, { createIfMissing: session })).toMatchObject({
          created: true,
          ended: true,
          owner: "subject-1",
        });
      });

      it("a request id used again for another request is key_reused and writes nothing", async () => {
        const id = await created();
        await store.append(id, tokens(1), { requestId: "k", fingerprint: "a" });
        expect(await store.append(id, tokens(2), { requestId: "k", fingerprint: "b" })).toEqual({
          kind: "key_reused",
        });
        expect((await store.read(id, null, 100)).events).toHaveLength(1);
      });

      it("a repeated creation is still the creation, and the lifecycle feed announces it once", async () => {
        const session = newSession(uniqueId("create-once"));
        const options = { createIfMissing: session, requestId: "create-1" };
        const first = await store.append(session.id, [], options);
        expect(first).toMatchObject({ kind: "appended", created: true });
        expect(await store.append(session.id, [], options)).toEqual({ ...first, replayed: true });
        const ended = { writer: { writerId: "w", seq: 1 } };
        const end = [
          { type: "done", data: { session_id: session.id, total_tokens: 0, finish_reason: "stop" } },
        ];
        const terminal = await store.append(session.id, end, ended);
        expect(await store.append(session.id, end, ended)).toEqual({ ...terminal, replayed: true });
        const feed = (await store.read(LIFECYCLE_FEED, null, 100_000)).events.filter(
          (e) => JSON.parse(e.data).id === session.id,
        );
        expect(feed.map((e) => e.type)).toEqual(["created", "ended"]);
      });

      it("refused means unchanged: an append over the publish rate writes and counts nothing", async () => {
        const id = await created();
        const rateLimit = { events: 3, windowSeconds: 60 };
        expect(await store.append(id, tokens(2), { rateLimit })).toMatchObject({ kind: "appended" });
        expect(await store.append(id, tokens(2), { rateLimit })).toEqual({ kind: "limited" });
        expect(await store.append(id, tokens(1), { rateLimit })).toMatchObject({ kind: "appended" });
        expect(await store.append(id, tokens(1), { rateLimit })).toEqual({ kind: "limited" });
        expect((await store.read(id, null, 100)).events).toHaveLength(3);
      });

      it("refused means unchanged: appends to a missing or ended session or under a lease write nothing", async () => {
        const missing = uniqueId("missing");
        expect(await store.append(missing, tokens(1))).toEqual({ kind: "missing" });
        expect(await store.getSession(missing)).toBeNull();
        const leased = await created();
        await store.holdLease(leased, "h", 60_000);
        expect(await store.append(leased, tokens(1), { requireNoLease: true })).toEqual({ kind: "leased" });
        expect((await store.read(leased, null, 10)).events).toEqual([]);
      });
    });
  });
}
