/**
 * The SubscriptionStore contract: one suite that the memory and the Redis sets must both pass, so the
 * HTTP layer and the connections that follow a set get the same semantics whichever backs them.
 * Above all: a PATCH is all or nothing (a refused one changes nothing), and an index is never reused.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type {
  SubscriptionChange,
  SubscriptionLimits,
  SubscriptionStore,
} from "../../src/mux/subscriptions.js";

export interface SubscriptionsHandle {
  subscriptions: SubscriptionStore;
  /** Lets `ms` pass for the store's expiry: an injected clock moves, or (Redis) real time passes. */
  elapse(ms: number): Promise<void>;
  close(): Promise<void>;
}

export type MakeSubscriptions = (limits: SubscriptionLimits) => Promise<SubscriptionsHandle>;

const MAX_SESSIONS = 4;
/** The shortest TTL Redis's EXPIRE takes: the expiry tests pass real time on the Redis side. */
const SHORT_TTL_SECONDS = 1;
const WAIT_MS = 5_000;

const newId = () => `sub_${randomBytes(6).toString("base64url")}`;
const entries = (members: Map<string, number> | null) => (members ? [...members.entries()] : null);

async function until<T>(probe: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function runSubscriptionsContract(name: string, make: MakeSubscriptions): void {
  describe(`SubscriptionStore contract: ${name}`, () => {
    let handle: SubscriptionsHandle;
    let subscriptions: SubscriptionStore;
    beforeAll(async () => {
      handle = await make({ maxSessions: MAX_SESSIONS, ttlSeconds: 3_600 });
      subscriptions = handle.subscriptions;
    });
    afterAll(() => handle?.close());

    describe("create, get and owner", () => {
      it("create gives each session the next index, in order, and get lists them in index order", async () => {
        const id = newId();
        const outcome = await subscriptions.create(id, ["a", "b", "c"], "alice");
        expect(outcome).toEqual({
          kind: "ok",
          change: {
            add: [
              { id: "a", index: 0 },
              { id: "b", index: 1 },
              { id: "c", index: 2 },
            ],
            remove: [],
          },
          sessions: ["a", "b", "c"],
        });
        expect(entries(await subscriptions.get(id))).toEqual([
          ["a", 0],
          ["b", 1],
          ["c", 2],
        ]);
      });

      it("records the creating subject as owner in the same step; null in open mode", async () => {
        const owned = newId();
        await subscriptions.create(owned, ["a"], "alice");
        expect(await subscriptions.owner(owned)).toBe("alice");
        const open = newId();
        await subscriptions.create(open, ["a"], null);
        expect(await subscriptions.owner(open)).toBeNull();
        expect(await subscriptions.get(open)).not.toBeNull();
      });

      it("an empty set exists (and can grow later)", async () => {
        const id = newId();
        expect(await subscriptions.create(id, [], "alice")).toEqual({
          kind: "ok",
          change: { add: [], remove: [] },
          sessions: [],
        });
        expect(entries(await subscriptions.get(id))).toEqual([]);
        expect(await subscriptions.patch(id, ["a"], [])).toMatchObject({ kind: "ok", sessions: ["a"] });
      });

      it("a session named twice in one call is added once", async () => {
        const id = newId();
        const outcome = await subscriptions.create(id, ["a", "a", "b"], null);
        expect(outcome).toMatchObject({
          change: {
            add: [
              { id: "a", index: 0 },
              { id: "b", index: 1 },
            ],
          },
        });
        expect(entries(await subscriptions.get(id))).toEqual([
          ["a", 0],
          ["b", 1],
        ]);
      });

      it("an unknown set reads as null, with no owner", async () => {
        const id = newId();
        expect(await subscriptions.get(id)).toBeNull();
        expect(await subscriptions.owner(id)).toBeNull();
      });
    });

    describe("patch", () => {
      it("patching an unknown set is `missing` and does not create it", async () => {
        const id = newId();
        expect(await subscriptions.patch(id, ["a"], [])).toEqual({ kind: "missing" });
        expect(await subscriptions.get(id)).toBeNull();
      });

      it("adds get fresh indexes, removes free no index: a re-added session gets a new one", async () => {
        const id = newId();
        await subscriptions.create(id, ["a", "b"], "alice");
        expect(await subscriptions.patch(id, ["c"], ["a"])).toEqual({
          kind: "ok",
          change: { add: [{ id: "c", index: 2 }], remove: ["a"] },
          sessions: ["b", "c"],
        });
        expect(await subscriptions.patch(id, ["a"], [])).toEqual({
          kind: "ok",
          change: { add: [{ id: "a", index: 3 }], remove: [] },
          sessions: ["b", "c", "a"],
        });
        expect(entries(await subscriptions.get(id))).toEqual([
          ["b", 1],
          ["c", 2],
          ["a", 3],
        ]);
        expect(await subscriptions.owner(id)).toBe("alice");
      });

      it("adding a member or removing a non-member is no change", async () => {
        const id = newId();
        await subscriptions.create(id, ["a"], null);
        expect(await subscriptions.patch(id, ["a"], ["zz"])).toEqual({
          kind: "ok",
          change: { add: [], remove: [] },
          sessions: ["a"],
        });
        expect(entries(await subscriptions.get(id))).toEqual([["a", 0]]);
      });

      it("a session both removed and added in one call leaves and comes back with a new index", async () => {
        const id = newId();
        await subscriptions.create(id, ["a", "b"], null);
        expect(await subscriptions.patch(id, ["a"], ["a"])).toEqual({
          kind: "ok",
          change: { add: [{ id: "a", index: 2 }], remove: ["a"] },
          sessions: ["b", "a"],
        });
      });
    });

    describe("limits: a refused call changes nothing", () => {
      it("creating past the limit is `too_many` with the size it would have had, and creates nothing", async () => {
        const id = newId();
        expect(await subscriptions.create(id, ["a", "b", "c", "d", "e"], "alice")).toEqual({
          kind: "too_many",
          size: 5,
        });
        expect(await subscriptions.get(id)).toBeNull();
        expect(await subscriptions.owner(id)).toBeNull();
      });

      it("a refused PATCH leaves the same members with the same indexes, and the next one gets fresh indexes", async () => {
        const id = newId();
        await subscriptions.create(id, ["a", "b", "c"], null);
        const before = entries(await subscriptions.get(id));
        // Removes count: a PATCH that removes while it adds is judged on the size it leads to.
        expect(await subscriptions.patch(id, ["x", "y", "z"], ["a"])).toEqual({ kind: "too_many", size: 5 });
        expect(entries(await subscriptions.get(id))).toEqual(before);
        expect(await subscriptions.patch(id, ["x", "y"], [])).toEqual({ kind: "too_many", size: 5 });
        expect(entries(await subscriptions.get(id))).toEqual(before);

        // The next accepted PATCH takes the next index as if the refused ones never happened.
        expect(await subscriptions.patch(id, ["w"], [])).toEqual({
          kind: "ok",
          change: { add: [{ id: "w", index: 3 }], remove: [] },
          sessions: ["a", "b", "c", "w"],
        });
        expect(await subscriptions.patch(id, ["v"], ["a"])).toEqual({
          kind: "ok",
          change: { add: [{ id: "v", index: 4 }], remove: ["a"] },
          sessions: ["b", "c", "w", "v"],
        });
        const indexes = [...(await subscriptions.get(id))!.values()];
        expect(new Set(indexes).size).toBe(indexes.length);
      });

      it("a PATCH that ends at the limit is accepted", async () => {
        const id = newId();
        await subscriptions.create(id, ["a", "b", "c", "d"], null);
        expect(await subscriptions.patch(id, ["e"], ["a"])).toMatchObject({
          kind: "ok",
          sessions: ["b", "c", "d", "e"],
        });
        expect(await subscriptions.patch(id, ["f"], [])).toEqual({ kind: "too_many", size: 5 });
      });
    });

    describe("follow", () => {
      it("followers learn each accepted change as the PATCH reported it, and nothing of refused or empty ones", async () => {
        const id = newId();
        await subscriptions.create(id, ["a", "b", "c"], null);
        const first: SubscriptionChange[] = [];
        const second: SubscriptionChange[] = [];
        const stopFirst = await subscriptions.follow(id, (change) => first.push(change));
        const stopSecond = await subscriptions.follow(id, (change) => second.push(change));

        expect(await subscriptions.patch(id, ["x", "y"], [])).toMatchObject({ kind: "too_many" });
        expect(await subscriptions.patch(id, ["a"], [])).toMatchObject({ change: { add: [], remove: [] } });
        const accepted = await subscriptions.patch(id, ["d"], ["a"]);
        if (accepted.kind !== "ok") throw new Error(`expected ok, got ${accepted.kind}`);
        await until(() => (first.length > 0 && second.length > 0 ? true : undefined), "the change");
        expect(first).toEqual([accepted.change]);
        expect(second).toEqual([accepted.change]);

        // After unfollowing, the first follower hears nothing (the second proves the message went out).
        stopFirst();
        const next = await subscriptions.patch(id, [], ["b"]);
        await until(() => (second.length === 2 ? true : undefined), "the second change");
        expect(second[1]).toEqual(next.kind === "ok" ? next.change : null);
        expect(first).toHaveLength(1);
        stopSecond();
      });

      it("followers of one set hear nothing of another", async () => {
        const mine = newId();
        const other = newId();
        await subscriptions.create(mine, ["a"], null);
        await subscriptions.create(other, ["a"], null);
        const heard: SubscriptionChange[] = [];
        const stop = await subscriptions.follow(mine, (change) => heard.push(change));
        await subscriptions.patch(other, ["b"], []);
        await subscriptions.patch(mine, ["c"], []);
        await until(() => (heard.length > 0 ? true : undefined), "the change");
        expect(heard).toEqual([{ add: [{ id: "c", index: 1 }], remove: [] }]);
        stop();
      });
    });

    describe("expiry", () => {
      let short: SubscriptionsHandle;
      beforeAll(async () => {
        short = await make({ maxSessions: MAX_SESSIONS, ttlSeconds: SHORT_TTL_SECONDS });
      });
      afterAll(() => short?.close());

      it("a set lapses TTL seconds after its last create, PATCH or touch", async () => {
        const { subscriptions: sets } = short;
        const id = newId();
        await sets.create(id, ["a"], "alice");
        await short.elapse(500);
        await sets.touch(id);
        await short.elapse(600);
        // Past the create's expiry, alive by the touch.
        expect(entries(await sets.get(id))).toEqual([["a", 0]]);
        expect(await sets.patch(id, ["b"], [])).toMatchObject({ kind: "ok" });
        await short.elapse(600);
        // Past the touch's expiry, alive by the PATCH.
        expect(entries(await sets.get(id))).toEqual([
          ["a", 0],
          ["b", 1],
        ]);
        await short.elapse(1_100);
        expect(await sets.get(id)).toBeNull();
        expect(await sets.owner(id)).toBeNull();
        expect(await sets.patch(id, ["c"], [])).toEqual({ kind: "missing" });
      });

      it("touching an unknown set does not create it", async () => {
        const id = newId();
        await short.subscriptions.touch(id);
        expect(await short.subscriptions.get(id)).toBeNull();
      });
    });
  });
}
