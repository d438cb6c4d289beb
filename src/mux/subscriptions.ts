/**
 * Server-side subscription sets: a set of session ids, each with a stable index (its slot in the
 * multiplexed cursor), kept in the store so any instance can serve it, and changed with a message
 * to every connection that follows it, on whatever instance.
 */
import { randomId } from "../random-id.js";
import type { KeyScheme } from "../store/keys.js";
import type { MessageHandler, PubSub } from "../store/pubsub.js";
import type { RedisClient } from "../store/redis-client.js";
import { DEFAULT_REQUEST_RECORD_TTL_SECONDS, script } from "../store/scripts.js";

export interface SubscriptionChange {
  add: Array<{ id: string; index: number }>;
  remove: string[];
}

export type PatchOutcome =
  | { kind: "ok"; change: SubscriptionChange; sessions: string[] }
  | { kind: "missing" }
  | { kind: "too_many"; size: number };

/**
 * Every change is all or nothing: a refused one (`too_many`, `missing`) changes nothing, and an added
 * session takes the next index, never one used before in the set. Members are listed in index order.
 * test/contract/subscriptions.contract.ts is the contract.
 */
export interface SubscriptionStore {
  /** Creates the set with its owner, in one step (or adds to it, keeping its owner, if it exists). */
  create(id: string, sessions: readonly string[], owner: string | null): Promise<PatchOutcome>;
  /** The subject that created the set (null: created in open mode). */
  owner(id: string): Promise<string | null>;
  /** Session id → stable index; null when the set does not exist (or expired). */
  get(id: string): Promise<Map<string, number> | null>;
  /** Removes, then adds; announces an accepted, non-empty change to the set's followers. */
  patch(id: string, add: readonly string[], remove: readonly string[]): Promise<PatchOutcome>;
  /** Keeps a set alive while a connection uses it. */
  touch(id: string): Promise<void>;
  follow(id: string, onChange: (change: SubscriptionChange) => void): Promise<() => void>;
}

export interface SubscriptionLimits {
  maxSessions: number;
  ttlSeconds: number;
}

function followVia(pubsub: PubSub, keys: KeyScheme) {
  return async (id: string, onChange: (change: SubscriptionChange) => void) => {
    const handler: MessageHandler = (message) => {
      try {
        onChange(JSON.parse(message) as SubscriptionChange);
      } catch {
        // Not ours: ignore.
      }
    };
    const channel = keys.subscriptionChannel(id);
    await pubsub.subscribe(channel, handler);
    return () => pubsub.unsubscribe(channel, handler);
  };
}

async function announce(pubsub: PubSub, keys: KeyScheme, id: string, outcome: PatchOutcome): Promise<void> {
  if (outcome.kind !== "ok") return;
  if (outcome.change.add.length === 0 && outcome.change.remove.length === 0) return;
  await pubsub.publish(keys.subscriptionChannel(id), JSON.stringify(outcome.change));
}

export function createMemorySubscriptions(
  pubsub: PubSub,
  keys: KeyScheme,
  limits: SubscriptionLimits,
  clock: () => number = Date.now,
): SubscriptionStore {
  const sets = new Map<
    string,
    { members: Map<string, number>; nextIndex: number; expiresAtMs: number; owner: string | null }
  >();
  const live = (id: string) => {
    const set = sets.get(id);
    if (set && set.expiresAtMs <= clock()) sets.delete(id);
    return sets.get(id);
  };
  function apply(
    id: string,
    create: boolean,
    add: readonly string[],
    remove: readonly string[],
    owner: string | null = null,
  ): PatchOutcome {
    let set = live(id);
    if (!set) {
      if (!create) return { kind: "missing" };
      set = { members: new Map(), nextIndex: 0, expiresAtMs: 0, owner };
    }
    const members = new Map(set.members);
    const removed = remove.filter((session) => members.delete(session));
    let nextIndex = set.nextIndex;
    const added: SubscriptionChange["add"] = [];
    for (const session of add) {
      if (members.has(session)) continue;
      members.set(session, nextIndex);
      added.push({ id: session, index: nextIndex++ });
    }
    if (members.size > limits.maxSessions) return { kind: "too_many", size: members.size };
    sets.set(id, { members, nextIndex, expiresAtMs: clock() + limits.ttlSeconds * 1000, owner: set.owner });
    return { kind: "ok", change: { add: added, remove: removed }, sessions: [...members.keys()] };
  }
  return {
    async create(id, sessions, owner) {
      return apply(id, true, sessions, [], owner);
    },
    async owner(id) {
      return live(id)?.owner ?? null;
    },
    async get(id) {
      const set = live(id);
      return set ? new Map(set.members) : null;
    },
    async patch(id, add, remove) {
      const outcome = apply(id, false, add, remove);
      await announce(pubsub, keys, id, outcome);
      return outcome;
    },
    async touch(id) {
      const set = live(id);
      if (set) set.expiresAtMs = clock() + limits.ttlSeconds * 1000;
    },
    follow: followVia(pubsub, keys),
  };
}

/** The creating subject, in the set's hash ("#next" is the other field that is not a member). */
const OWNER_FIELD = "#owner";
const isMember = (field: string) => !field.startsWith("#");

export interface RedisSubscriptionOptions {
  /** How long a call's outcome is kept to answer a resent call the same; default 300 s. */
  requestRecordTtlSeconds?: number;
}

/** Decodes subscription-patch-2.lua's reply (see its header). */
function outcomeOf(reply: readonly string[]): PatchOutcome {
  const [kind] = reply;
  if (kind === "missing") return { kind: "missing" };
  if (kind === "too_many") return { kind: "too_many", size: Number(reply[1]) };
  if (kind !== "ok") throw new Error(`subscription-patch: unexpected reply ${String(kind)}`);
  let at = 1;
  const add: SubscriptionChange["add"] = [];
  for (let count = Number(reply[at++]); count > 0; count--, at += 2) {
    add.push({ id: reply[at]!, index: Number(reply[at + 1]) });
  }
  const removeCount = Number(reply[at++]);
  const remove = reply.slice(at, at + removeCount);
  return { kind: "ok", change: { add, remove }, sessions: reply.slice(at + removeCount) };
}

export function createRedisSubscriptions(
  redis: RedisClient,
  pubsub: PubSub,
  keys: KeyScheme,
  limits: SubscriptionLimits,
  { requestRecordTtlSeconds = DEFAULT_REQUEST_RECORD_TTL_SECONDS }: RedisSubscriptionOptions = {},
): SubscriptionStore {
  const patchScript = script<string[]>(redis, "subscription-patch-2");
  /** One round trip: the script changes the set, records the owner of a new one, and lists the members. */
  async function run(
    id: string,
    mode: "create" | "patch",
    add: readonly string[],
    remove: readonly string[],
    owner: string | null = null,
  ): Promise<PatchOutcome> {
    const setKey = keys.subscription(id);
    // Fresh per call, and the same in a resent call (ioredis resends the same arguments): what lets the
    // script tell a repeat from a new call. The record shares the set's hash tag.
    const requestId = randomId(12);
    const reply = await patchScript(
      setKey,
      `${setKey}:req:${requestId}`,
      limits.maxSessions,
      limits.ttlSeconds,
      mode,
      owner ?? "",
      requestRecordTtlSeconds,
      add.length,
      ...add,
      ...remove,
    );
    return outcomeOf(reply);
  }
  return {
    create(id, sessions, owner) {
      return run(id, "create", sessions, [], owner);
    },
    async owner(id) {
      return redis.hget(keys.subscription(id), OWNER_FIELD);
    },
    async get(id) {
      const hash = await redis.hgetall(keys.subscription(id));
      if (Object.keys(hash).length === 0) return null;
      const members: Array<[string, number]> = [];
      for (const [session, index] of Object.entries(hash)) {
        if (isMember(session)) members.push([session, Number(index)]);
      }
      // In index order, the order sessions joined, as the script lists them.
      return new Map(members.sort((a, b) => a[1] - b[1]));
    },
    async patch(id, add, remove) {
      const outcome = await run(id, "patch", add, remove);
      await announce(pubsub, keys, id, outcome);
      return outcome;
    },
    async touch(id) {
      await redis.expire(keys.subscription(id), limits.ttlSeconds);
    },
    follow: followVia(pubsub, keys),
  };
}
