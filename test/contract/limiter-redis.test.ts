/** The Redis limiter's scripts beyond the contract: a resent call counts once, a refused one writes nothing. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_REQUEST_RECORD_TTL_SECONDS, type ScriptCall, script } from "../../src/store/scripts.js";
import { type RedisTestBackend, redisBackend } from "./backends.js";

describe("consume-2.lua and acquire-1.lua", () => {
  let handle: RedisTestBackend;
  let consume: ScriptCall<number>;
  let acquire: ScriptCall<number>;
  let n = 0;
  const key = (label: string) => `${handle.keyPrefix}${label}${++n}`;
  beforeAll(async () => {
    handle = await redisBackend.build();
    consume = script<number>(handle.command, "consume-2");
    acquire = script<number>(handle.command, "acquire-1");
  });
  afterAll(() => handle?.close());

  it("the same consume twice (same request id) is accepted twice and counted once", async () => {
    const counter = key("runs");
    const call = () => consume(counter, `${counter}:req:r1`, 2, 3, 120, DEFAULT_REQUEST_RECORD_TTL_SECONDS);
    expect(await call()).toBe(1);
    expect(await call()).toBe(1);
    expect(await handle.command.get(counter)).toBe("2");
    const recordTtl = await handle.command.ttl(`${counter}:req:r1`);
    expect(recordTtl).toBeGreaterThan(DEFAULT_REQUEST_RECORD_TTL_SECONDS - 5);
    expect(await handle.command.ttl(counter)).toBeLessThanOrEqual(120);
  });

  it("a refused consume writes nothing, not even a record", async () => {
    const counter = key("runs");
    expect(await consume(counter, `${counter}:req:r1`, 3, 3, 120, 300)).toBe(1);
    expect(await consume(counter, `${counter}:req:r2`, 1, 3, 120, 300)).toBe(0);
    expect(await handle.command.get(counter)).toBe("3");
    expect(await handle.command.exists(`${counter}:req:r2`)).toBe(0);
  });

  it("the same acquire twice holds one place with the same end (1 taken, then 2 held), even once the set is full", async () => {
    const set = key("active");
    const now = Date.now();
    expect(await acquire(set, "a", 2, now, 60_000)).toBe(1);
    const entries = await handle.command.zrange(set, 0, -1, "WITHSCORES");
    expect(await acquire(set, "a", 2, now, 60_000)).toBe(2);
    expect(await handle.command.zrange(set, 0, -1, "WITHSCORES")).toEqual(entries);
    expect(await acquire(set, "b", 2, now, 60_000)).toBe(1);
    expect(await acquire(set, "a", 2, now, 60_000)).toBe(2);
    expect(await handle.command.zcard(set)).toBe(2);
    expect(entries).toEqual(["a", String(now + 60_000)]);
  });

  it("a refused acquire writes nothing: lapsed places stay until a call is accepted", async () => {
    const set = key("active");
    const now = Date.now();
    await acquire(set, "a", 2, now, 60_000);
    // A place taken, as it were, two minutes ago: lapsed by now.
    await acquire(set, "old", 2, now - 120_000, 60_000);
    const entries = await handle.command.zrange(set, 0, -1, "WITHSCORES");
    expect(entries).toEqual(["old", String(now - 60_000), "a", String(now + 60_000)]);
    expect(await acquire(set, "b", 1, now, 60_000)).toBe(0);
    expect(await handle.command.zrange(set, 0, -1, "WITHSCORES")).toEqual(entries);
    // Accepted, a call clears the lapsed places.
    expect(await acquire(set, "b", 2, now, 60_000)).toBe(1);
    expect(await handle.command.zrange(set, 0, -1)).toEqual(["a", "b"]);
  });
});
