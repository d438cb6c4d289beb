/**
 * What a request waits for of the store is bounded. The Redis connections queue commands through an
 * outage (maxRetriesPerRequest: null: open streams and runs resume by themselves), so without a bound
 * a read that meets an outage, or a Redis that stopped answering, waits for ever, holding its request
 * and socket. Here every store call a request waits for gives up after STORE_TIMEOUT_MS with
 * `503 unavailable` and `Retry-After` (the command itself may still run later: reads and limit places
 * are harmless to run late, and a place taken late lapses with its TTL).
 *
 * Writes that carry data (appends, creating sessions and sets, patches) are not bounded here: answered
 * 503 while the command could still be applied later, a retry would write twice. They are refused
 * before they start while the store is not ready (guards.ts), and one caught by a connection loss
 * waits for the reconnection, as before. Runs use the store directly (their buffer rides out outages).
 */
import { errors } from "../errors.js";
import type { Limiter } from "../limits/limiter.js";
import type { SubscriptionStore } from "../mux/subscriptions.js";
import type { StreamStore } from "../store/types.js";

function timedOut() {
  return errors.unavailable("the store (Redis) did not answer in time (STORE_TIMEOUT_MS); try again shortly");
}

/** `call`, or `503 unavailable` once `ms` have passed without its answer. */
export function within<T>(call: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
  });
  return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
}

/** The store as requests see it: its reads bounded. */
export function boundedStore(store: StreamStore, ms: number): StreamStore {
  return {
    kind: store.kind,
    notifier: store.notifier,
    isReady: () => store.isReady(),
    createSession: (session) => store.createSession(session),
    getSession: (id) => within(store.getSession(id), ms),
    append: (sessionId, events, options) => store.append(sessionId, events, options),
    read: (sessionId, after, count) => within(store.read(sessionId, after, count), ms),
    holdLease: (sessionId, holderId, ttlMs) => store.holdLease(sessionId, holderId, ttlMs),
    releaseLease: (sessionId) => store.releaseLease(sessionId),
    expiredLeases: (nowMs, limit) => store.expiredLeases(nowMs, limit),
    forgetLease: (sessionId) => store.forgetLease(sessionId),
    close: () => store.close(),
  };
}

/** Limits as requests see them: every call bounded (a refused or late place is harmless). */
export function boundedLimiter(limiter: Limiter, ms: number): Limiter {
  return {
    consume: (key, windowSeconds, cost, limit) =>
      within(limiter.consume(key, windowSeconds, cost, limit), ms),
    acquire: (key, member, limit, ttlMs) => within(limiter.acquire(key, member, limit, ttlMs), ms),
    release: (key, member) => within(limiter.release(key, member), ms),
  };
}

/** Subscription sets as requests see them: reads and follows bounded, changes not (see above). */
export function boundedSubscriptions(subscriptions: SubscriptionStore, ms: number): SubscriptionStore {
  return {
    create: (id, sessions, owner) => subscriptions.create(id, sessions, owner),
    patch: (id, add, remove) => subscriptions.patch(id, add, remove),
    owner: (id) => within(subscriptions.owner(id), ms),
    get: (id) => within(subscriptions.get(id), ms),
    touch: (id) => within(subscriptions.touch(id), ms),
    follow(id, onChange) {
      const following = subscriptions.follow(id, onChange);
      return within(following, ms).catch((error: unknown) => {
        // Given up on: should the follow still succeed, it is undone then.
        following.then((unfollow) => unfollow()).catch(() => {});
        throw error;
      });
    },
  };
}
