/** The Redis subscription sets' script beyond the contract: resent and refused calls, one round trip. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_REQUEST_RECORD_TTL_SECONDS, script } from "../../src/store/scripts.js";
import { type RedisTestBackend, redisBackend } from "./backends.js";

describe("subscription-patch-2.lua", () => {
  const MAX_SESSIONS = 4;
  const TTL_SECONDS = 3_600;
  let handle: RedisTestBackend;
  let patch: (...keysAndArgs: Array<string | number>) => Promise<string[]>;
  let id = 0;
  const setKey = () => handle.keys.subscription(`set${++id}`);
  /** The script's arguments for one call (request id `request`). */
  const call = (key: string, request: string, mode: string, owner: string, add: string[], remove: string[]) =>
    patch(
      key,
      `${key}:req:${request}`,
      MAX_SESSIONS,
      TTL_SECONDS,
      mode,
      owner,
      DEFAULT_REQUEST_RECORD_TTL_SECONDS,
      add.length,
      ...add,
      ...remove,
    );

  beforeAll(async () => {
    handle = await redisBackend.build({
      subscriptionLimits: { maxSessions: MAX_SESSIONS, ttlSeconds: TTL_SECONDS },
    });
    patch = script<string[]>(handle.command, "subscription-patch-2");
  });
  afterAll(() => handle?.close());

  it("the same create twice (same request id) answers the same and writes once", async () => {
    const key = setKey();
    const first = await call(key, "r1", "create", "alice", ["a", "b"], []);
    const hash = await handle.command.hgetall(key);
    expect(first).toEqual(["ok", "2", "a", "0", "b", "1", "0", "a", "b"]);
    expect(await call(key, "r1", "create", "alice", ["a", "b"], [])).toEqual(first);
    expect(await handle.command.hgetall(key)).toEqual(hash);
    expect(hash).toEqual({ a: "0", b: "1", "#next": "2", "#owner": "alice" });
  });

  it("a PATCH resent after a later change answers with its own change (same indexes) and writes nothing", async () => {
    const key = setKey();
    await call(key, "c", "create", "", ["a"], []);
    const first = await call(key, "p1", "patch", "", ["b", "c"], ["a"]);
    expect(first).toEqual(["ok", "2", "b", "1", "c", "2", "1", "a", "b", "c"]);
    // Another call removes c; then the first PATCH comes again (its reply was lost).
    await call(key, "p2", "patch", "", [], ["c"]);
    const hash = await handle.command.hgetall(key);
    const again = await call(key, "p1", "patch", "", ["b", "c"], ["a"]);
    // The same change; the members listed are the set's current ones.
    expect(again).toEqual(["ok", "2", "b", "1", "c", "2", "1", "a", "b"]);
    expect(await handle.command.hgetall(key)).toEqual(hash);
    expect(hash).toEqual({ b: "1", "#next": "3" });
  });

  it("a refused call writes nothing at all (no record either): the same call later is judged afresh", async () => {
    const key = setKey();
    await call(key, "c", "create", "", ["a", "b", "c"], []);
    const hash = await handle.command.hgetall(key);
    expect(await call(key, "p1", "patch", "", ["d", "e", "f"], ["a"])).toEqual(["too_many", "5"]);
    expect(await handle.command.hgetall(key)).toEqual(hash);
    expect(await handle.command.exists(`${key}:req:p1`)).toBe(0);
    // Another call made room meanwhile: the resent call is accepted, as if it ran only now.
    await call(key, "p2", "patch", "", [], ["b"]);
    expect(await call(key, "p1", "patch", "", ["d", "e", "f"], ["a"])).toEqual([
      "ok",
      "3",
      "d",
      "3",
      "e",
      "4",
      "f",
      "5",
      "1",
      "a",
      "c",
      "d",
      "e",
      "f",
    ]);
  });

  it("a PATCH of an unknown set is missing and writes nothing", async () => {
    const key = setKey();
    expect(await call(key, "p1", "patch", "", ["a"], [])).toEqual(["missing"]);
    expect(await handle.command.exists(key, `${key}:req:p1`)).toBe(0);
  });

  it("an accepted call's record lasts the request record TTL", async () => {
    const key = setKey();
    await call(key, "c", "create", "", ["a"], []);
    const ttl = await handle.command.ttl(`${key}:req:c`);
    expect(ttl).toBeGreaterThan(DEFAULT_REQUEST_RECORD_TTL_SECONDS - 5);
    expect(ttl).toBeLessThanOrEqual(DEFAULT_REQUEST_RECORD_TTL_SECONDS);
  });

  it("create (with its owner) and PATCH are one round trip each, the PATCH's announcement aside", async () => {
    const sent: string[] = [];
    const { command } = handle;
    const { subscriptions } = handle.backend;
    const original = command.sendCommand.bind(command);
    command.sendCommand = (cmd, stream) => {
      sent.push(cmd.name);
      return original(cmd, stream);
    };
    try {
      await subscriptions.create("one-trip", ["a", "b"], "alice");
      expect(sent).toEqual(["evalsha"]);
      expect(await subscriptions.owner("one-trip")).toBe("alice");
      sent.length = 0;
      await subscriptions.patch("one-trip", ["c"], ["a"]);
      expect(sent).toEqual(["evalsha", "publish"]);
    } finally {
      command.sendCommand = original;
    }
  });
});
