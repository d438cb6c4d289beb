/**
 * Cost and abuse limits shared by every instance: fixed-window counters (runs per minute, publish
 * rate) and bounded sets (concurrent runs, open connections) whose entries lapse unless renewed.
 */
import { randomId } from "../random-id.js";
import type { RedisClient } from "../store/redis-client.js";
import { DEFAULT_REQUEST_RECORD_TTL_SECONDS, script } from "../store/scripts.js";

export type LimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

/** What `acquire` did: took a new place, renewed the member's own, or took nothing (the set is full). */
export type Place = "taken" | "held" | "full";

/**
 * A refused call takes nothing (a refused `consume` leaves the window's total as it was); the Redis
 * limiter answers a resent call (its reply lost) as it answered the first, counting it once.
 * test/contract/limiter.contract.ts is the contract.
 */
export interface Limiter {
  /** Adds `cost` to the current window of `key`, unless the window's total would pass `limit` (refused). */
  consume(key: string, windowSeconds: number, cost: number, limit: number): Promise<LimitDecision>;
  /** Takes (or renews) a place for `member` in `key`, for `ttlMs`; "full" when `limit` places are taken. */
  acquire(key: string, member: string, limit: number, ttlMs: number): Promise<Place>;
  release(key: string, member: string): Promise<void>;
}

function windowOf(nowMs: number, windowSeconds: number) {
  const windowMs = windowSeconds * 1000;
  const index = Math.floor(nowMs / windowMs);
  return { index, retryAfterSeconds: Math.max(1, Math.ceil(((index + 1) * windowMs - nowMs) / 1000)) };
}

export interface RedisLimiterOptions {
  /** How long an accepted `consume` is remembered to answer a resent call the same; default 300 s. */
  requestRecordTtlSeconds?: number;
}

export function createRedisLimiter(
  redis: RedisClient,
  prefix: string,
  clock: () => number = Date.now,
  { requestRecordTtlSeconds = DEFAULT_REQUEST_RECORD_TTL_SECONDS }: RedisLimiterOptions = {},
): Limiter {
  // Written at once: a run's admission is on its way to its first token.
  const consumeScript = script<number>(redis, "consume-2", { atOnce: true });
  const acquireScript = script<number>(redis, "acquire-1", { atOnce: true });
  return {
    async consume(key, windowSeconds, cost, limit) {
      const window = windowOf(clock(), windowSeconds);
      // The counter and its request records share one hash tag (one Cluster slot).
      const counter = `${prefix}limit:{${key}}:${window.index}`;
      // Fresh per call, and the same in a resent call: what lets the script count a call once.
      const record = `${counter}:req:${randomId(12)}`;
      const accepted = await consumeScript(
        counter,
        record,
        cost,
        limit,
        windowSeconds * 2,
        requestRecordTtlSeconds,
      );
      return accepted === 1 ? { ok: true } : { ok: false, retryAfterSeconds: window.retryAfterSeconds };
    },
    async acquire(key, member, limit, ttlMs) {
      // Idempotent by member (see acquire-1.lua): no request id needed.
      const outcome = await acquireScript(`${prefix}limit:${key}`, member, limit, clock(), ttlMs);
      return outcome === 1 ? "taken" : outcome === 2 ? "held" : "full";
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
      const now = clock();
      const window = windowOf(now, windowSeconds);
      const counter = counters.get(key);
      const total = (counter && counter.index === window.index ? counter.total : 0) + cost;
      if (total > limit) return { ok: false, retryAfterSeconds: window.retryAfterSeconds };
      if (counters.size > 10_000) {
        for (const [stale, entry] of counters) if (entry.expiresAtMs < now) counters.delete(stale);
      }
      counters.set(key, { index: window.index, total, expiresAtMs: now + windowSeconds * 1000 });
      return { ok: true };
    },
    async acquire(key, member, limit, ttlMs) {
      const now = clock();
      const set = sets.get(key) ?? new Map<string, number>();
      for (const [held, expiresAtMs] of set) if (expiresAtMs <= now) set.delete(held);
      const held = set.has(member);
      if (!held && set.size >= limit) return "full";
      set.set(member, now + ttlMs);
      sets.set(key, set);
      return held ? "held" : "taken";
    },
    async release(key, member) {
      sets.get(key)?.delete(member);
    },
  };
}
