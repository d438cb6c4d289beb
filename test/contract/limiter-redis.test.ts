import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createRedisLimiter } from "../../src/limits/limiter.js";
import { DEFAULT_REQUEST_RECORD_TTL_SECONDS, type ScriptCall, script } from "../../src/store/scripts.js";
import { randomPrefix } from "../helpers/index.js";
import { runLimiterContract } from "./limiter.contract.js";

async function makeRedisLimiter(clock: () => number) {
  const redis = new Redis(inject("redisUrl"), { lazyConnect: true });
  await redis.connect();
  const prefix = randomPrefix();
  return {
    limiter: createRedisLimiter(redis, prefix, clock),
    redis,
    prefix,
    async close() {
      await redis.quit();
    },
  };
}

runLimiterContract("redis", makeRedisLimiter);

describe("consume-2.lua and acquire-1.lua", () => {
  let handle: Awaited<ReturnType<typeof makeRedisLimiter>>;
  let consume: ScriptCall<number>;
  let acquire: ScriptCall<number>;
  let n = 0;
  const key = (label: string) => `${handle.prefix}${label}${++n}`;
  beforeAll(async () => {
    handle = await makeRedisLimiter(Date.now);
    consume = script<number>(handle.redis, "consume-2");
    acquire = script<number>(handle.redis, "acquire-1");
  });
  afterAll(() => handle?.close());

  it("the same consume twice (same request id) is accepted twice and counted once", async () => {
    const counter = key("runs");
    const call = () => consume(counter, `${counter}:req:r1`, 2, 3, 120, DEFAULT_REQUEST_RECORD_TTL_SECONDS);
    expect(await call()).toBe(1);
    expect(await call()).toBe(1);
    expect(await handle.redis.get(counter)).toBe("2");
    const recordTtl = await handle.redis.ttl(`${counter}:req:r1`);
    expect(recordTtl).toBeGreaterThan(DEFAULT_REQUEST_RECORD_TTL_SECONDS - 5);
    expect(await handle.redis.ttl(counter)).toBeLessThanOrEqual(120);
  });

  it("a refused consume writes nothing, not even a record", async () => {
    const counter = key("runs");
    expect(await consume(counter, `${counter}:req:r1`, 3, 3, 120, 300)).toBe(1);
    expect(await consume(counter, `${counter}:req:r2`, 1, 3, 120, 300)).toBe(0);
    expect(await handle.redis.get(counter)).toBe("3");
    expect(await handle.redis.exists(`${counter}:req:r2`)).toBe(0);
  });

  it("the same acquire twice holds one place with the same end, even once the set is full", async () => {
    const set = key("active");
    const now = Date.now();
    expect(await acquire(set, "a", 2, now, 60_000)).toBe(1);
    const entries = await handle.redis.zrange(set, 0, -1, "WITHSCORES");
    expect(await acquire(set, "a", 2, now, 60_000)).toBe(1);
    expect(await handle.redis.zrange(set, 0, -1, "WITHSCORES")).toEqual(entries);
    expect(await acquire(set, "b", 2, now, 60_000)).toBe(1);
    expect(await acquire(set, "a", 2, now, 60_000)).toBe(1);
    expect(await handle.redis.zcard(set)).toBe(2);
    expect(entries).toEqual(["a", String(now + 60_000)]);
  });

  it("a refused acquire writes nothing: lapsed places stay until a call is accepted", async () => {
    const set = key("active");
    const now = Date.now();
    await acquire(set, "a", 2, now, 60_000);
    // A place taken, as it were, two minutes ago: lapsed by now.
    await acquire(set, "old", 2, now - 120_000, 60_000);
    const entries = await handle.redis.zrange(set, 0, -1, "WITHSCORES");
    expect(entries).toEqual(["old", String(now - 60_000), "a", String(now + 60_000)]);
    expect(await acquire(set, "b", 1, now, 60_000)).toBe(0);
    expect(await handle.redis.zrange(set, 0, -1, "WITHSCORES")).toEqual(entries);
    // Accepted, a call clears the lapsed places.
    expect(await acquire(set, "b", 2, now, 60_000)).toBe(1);
    expect(await handle.redis.zrange(set, 0, -1)).toEqual(["a", "b"]);
  });
});
