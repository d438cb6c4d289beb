/**
 * Server-side subscription sets: a set of session ids, each with a stable index (its slot in the
 * multiplexed cursor), kept in the store so any instance can serve it, and changed with a message
 * to every connection that follows it, on whatever instance.
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { KeyScheme } from "../store/keys.js";
import type { MessageHandler, PubSub } from "../store/pubsub.js";

export interface SubscriptionChange {
  add: Array<{ id: string; index: number }>;
  remove: string[];
}

export type PatchOutcome =
  | { kind: "ok"; change: SubscriptionChange; sessions: string[] }
  | { kind: "missing" }
  | { kind: "too_many"; size: number };

export interface SubscriptionStore {
  create(id: string, sessions: readonly string[], owner: string | null): Promise<PatchOutcome>;
  /** The subject that created the set (null: created in open mode). */
  owner(id: string): Promise<string | null>;
  /** Session id → stable index; null when the set does not exist (or expired). */
  get(id: string): Promise<Map<string, number> | null>;
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

interface PatchingRedis extends Redis {
  gatewaySubscriptionPatch(...args: Array<string | number>): Promise<string[]>;
}

/** Fields of the set's hash that are not members ("#next", "#owner": session ids cannot contain "#"). */
const OWNER_FIELD = "#owner";
const isMember = (field: string) => !field.startsWith("#");

export function createRedisSubscriptions(
  redis: Redis,
  pubsub: PubSub,
  keys: KeyScheme,
  limits: SubscriptionLimits,
): SubscriptionStore {
  const client = redis as PatchingRedis;
  if (typeof client.gatewaySubscriptionPatch !== "function") {
    client.defineCommand("gatewaySubscriptionPatch", {
      numberOfKeys: 1,
      lua: readFileSync(new URL("../store/lua/subscription-patch-1.lua", import.meta.url), "utf8"),
    });
  }
  async function run(id: string, create: boolean, add: readonly string[], remove: readonly string[]) {
    let reply: string[];
    try {
      reply = await client.gatewaySubscriptionPatch(
        keys.subscription(id),
        limits.maxSessions,
        limits.ttlSeconds,
        create ? "1" : "0",
        add.length,
        ...add,
        ...remove,
      );
    } catch (error) {
      const match = /too_many (\d+)/.exec(error instanceof Error ? error.message : "");
      if (match) return { kind: "too_many", size: Number(match[1]) } as const;
      throw error;
    }
    if (reply[0] === "missing") return { kind: "missing" } as const;
    const separator = reply.indexOf("|");
    const added: SubscriptionChange["add"] = [];
    for (let i = 1; i < separator; i += 2) added.push({ id: reply[i]!, index: Number(reply[i + 1]) });
    const members = await client.hkeys(keys.subscription(id));
    return {
      kind: "ok",
      change: { add: added, remove: reply.slice(separator + 1) },
      sessions: members.filter(isMember),
    } as const;
  }
  return {
    async create(id, sessions, owner) {
      const outcome = await run(id, true, sessions, []);
      if (outcome.kind === "ok" && owner !== null)
        await redis.hset(keys.subscription(id), OWNER_FIELD, owner);
      return outcome;
    },
    async owner(id) {
      return redis.hget(keys.subscription(id), OWNER_FIELD);
    },
    async get(id) {
      const hash = await redis.hgetall(keys.subscription(id));
      if (Object.keys(hash).length === 0) return null;
      const members = new Map<string, number>();
      for (const [session, index] of Object.entries(hash)) {
        if (isMember(session)) members.set(session, Number(index));
      }
      return members;
    },
    async patch(id, add, remove) {
      const outcome = await run(id, false, add, remove);
      await announce(pubsub, keys, id, outcome);
      return outcome;
    },
    async touch(id) {
      await redis.expire(keys.subscription(id), limits.ttlSeconds);
    },
    follow: followVia(pubsub, keys),
  };
}
