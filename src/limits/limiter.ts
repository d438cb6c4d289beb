/**
 * Cost and abuse limits shared by every instance: fixed-window counters (runs per minute, publish
 * rate) and bounded sets (concurrent runs, open connections) whose entries lapse unless renewed.
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

export type LimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

export interface Limiter {
  /** Adds `cost` to the current window of `key`; refused when the window's total passes `limit`. */
  consume(key: string, windowSeconds: number, cost: number, limit: number): Promise<LimitDecision>;
  /** Takes (or renews) a place for `member` in `key`, for `ttlMs`; false when `limit` places are taken. */
  acquire(key: string, member: string, limit: number, ttlMs: number): Promise<boolean>;
  release(key: string, member: string): Promise<void>;
}

function windowOf(nowMs: number, windowSeconds: number) {
  const windowMs = windowSeconds * 1000;
  const index = Math.floor(nowMs / windowMs);
  return { index, retryAfterSeconds: Math.max(1, Math.ceil(((index + 1) * windowMs - nowMs) / 1000)) };
}

interface AcquiringRedis extends Redis {
  gatewayAcquire(key: string, member: string, limit: number, now: number, ttl: number): Promise<number>;
}

export function createRedisLimiter(redis: Redis, prefix: string, clock: () => number = Date.now): Limiter {
  const client = redis as AcquiringRedis;
  if (typeof client.gatewayAcquire !== "function") {
    client.defineCommand("gatewayAcquire", {
      numberOfKeys: 1,
      lua: readFileSync(new URL("../store/lua/acquire-1.lua", import.meta.url), "utf8"),
    });
  }
  return {
    async consume(key, windowSeconds, cost, limit) {
      const window = windowOf(clock(), windowSeconds);
      const counter = `${prefix}limit:${key}:${window.index}`;
      const replies = await redis
        .multi()
        .incrby(counter, cost)
        .expire(counter, windowSeconds * 2)
        .exec();
      const total = Number(replies?.[0]?.[1] ?? 0);
      return total <= limit ? { ok: true } : { ok: false, retryAfterSeconds: window.retryAfterSeconds };
    },
    async acquire(key, member, limit, ttlMs) {
      return (await client.gatewayAcquire(`${prefix}limit:${key}`, member, limit, clock(), ttlMs)) === 1;
    },
    async release(key, member) {
      await redis.zrem(`${prefix}limit:${key}`, member);
    },
  };
}

export function createMemoryLimiter(clock: () => number = Date.now): Limiter {
  const counters = new Map<string, { index: number; total: number; expiresAtMs: number }>();
  const sets = new Map<string, Map<string, number>>();
  return {
    async consume(key, windowSeconds, cost, limit) {
      const window = windowOf(clock(), windowSeconds);
      const counter = counters.get(key);
      const total = (counter && counter.index === window.index ? counter.total : 0) + cost;
      const now = clock();
      if (counters.size > 10_000) {
        for (const [stale, entry] of counters) if (entry.expiresAtMs < now) counters.delete(stale);
      }
      counters.set(key, { index: window.index, total, expiresAtMs: now + windowSeconds * 1000 });
      return total <= limit ? { ok: true } : { ok: false, retryAfterSeconds: window.retryAfterSeconds };
    },
    async acquire(key, member, limit, ttlMs) {
      const now = clock();
      const set = sets.get(key) ?? new Map<string, number>();
      for (const [held, expiresAtMs] of set) if (expiresAtMs <= now) set.delete(held);
      if (!set.has(member) && set.size >= limit) return false;
      set.set(member, now + ttlMs);
      sets.set(key, set);
      return true;
    },
    async release(key, member) {
      sets.get(key)?.delete(member);
    },
  };
}
