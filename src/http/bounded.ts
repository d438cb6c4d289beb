/**
 * What a request waits for of the store is bounded. The Redis connections queue commands through an
 * outage (maxRetriesPerRequest: null: open streams and runs resume by themselves), so without a bound
 * a request that meets an outage, or a Redis that stopped answering, waits for ever, holding its
 * request and socket. Here every store call a request waits for gives up after STORE_TIMEOUT_MS with
 * `503 unavailable` and `Retry-After`. The command itself may still run later: reads and limit places
 * are harmless to run late (a place taken late lapses with its TTL); a write (an append, a new set, a
 * change to one) may then have been applied although it was answered 503, as with any request whose
 * answer is lost: an append retried with the same Idempotency-Key is applied once. While the store is
 * known not to be ready, nothing is sent to it at all (guards.ts). Runs use the store directly (their
 * buffer rides out outages), so a run start that takes no limit place first (an admin token's) waits
 * for the store once it has begun.
 */
import { errors } from "../errors.js";
import type { Limiter } from "../limits/limiter.js";
import type { SubscriptionStore } from "../mux/subscriptions.js";
import type { StreamStore } from "../store/types.js";

function timedOut() {
  return errors.unavailable("the store (Redis) did not answer in time (STORE_TIMEOUT_MS); try again shortly");
}

/**
 * `call`, or `503 unavailable` once `ms` have passed without its answer. One promise and one timer per
 * call (not a race of two promises and a `finally`): every store call of a run's start passes here.
 */
export function within<T>(call: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut()), ms);
    call.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** The store as requests see it: every call a request waits for bounded. */
export function boundedStore(store: StreamStore, ms: number): StreamStore {
  return {
    kind: store.kind,
    notifier: store.notifier,
    isReady: () => store.isReady(),
    createSession: (session) => within(store.createSession(session), ms),
    getSession: (id) => within(store.getSession(id), ms),
    append: (sessionId, events, options) => within(store.append(sessionId, events, options), ms),
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

/** Subscription sets as requests see them: every call bounded. */
export function boundedSubscriptions(subscriptions: SubscriptionStore, ms: number): SubscriptionStore {
  return {
    create: (id, sessions, owner) => within(subscriptions.create(id, sessions, owner), ms),
    patch: (id, add, remove) => within(subscriptions.patch(id, add, remove), ms),
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
