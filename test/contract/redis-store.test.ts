import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createKeyScheme, type KeyScheme } from "../../src/store/keys.js";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { createRedisStore } from "../../src/store/redis-store.js";
import type { RetentionOptions } from "../../src/store/session-fields.js";
import type { StreamStore } from "../../src/store/types.js";
import { randomPrefix } from "../helpers/index.js";
import {
  DEFAULT_RETENTION,
  newSession,
  runStreamStoreContract,
  type StoreHandle,
  uniqueId,
} from "./stream-store.contract.js";

/** How the store's scripts reach Redis; `resendEveryWrite` sends each append twice, as ioredis re-sends a command whose reply was lost. */
interface ScriptClient {
  gatewayAppend(...args: unknown[]): Promise<unknown>;
}

async function makeRedisStore(
  retention: Partial<RetentionOptions> = {},
  { resendEveryWrite = false } = {},
): Promise<StoreHandle & { command: Redis; keys: KeyScheme }> {
  const url = inject("redisUrl");
  const command = new Redis(url, { lazyConnect: true });
  const subscriber = new Redis(url, { lazyConnect: true });
  await Promise.all([command.connect(), subscriber.connect()]);
  const keys = createKeyScheme(randomPrefix());
  const pubsub = createRedisPubSub(subscriber, command);
  const options = { redis: command, pubsub, keys, retention: { ...DEFAULT_RETENTION, ...retention } };
  let store = createRedisStore(options);
  if (resendEveryWrite) {
    const client = command as unknown as ScriptClient;
    const append = client.gatewayAppend.bind(client);
    client.gatewayAppend = async (...args) => {
      const first = (await append(...args)) as unknown[];
      const repeat = (await append(...args)) as unknown[];
      // The repeat answers the first reply, flagged as replayed (reply[6]) where it was an append.
      const unflagged = (reply: unknown[]) =>
        JSON.stringify(reply[0] === "appended" ? [...reply.slice(0, 6), ...reply.slice(7)] : reply);
      if (first[0] === "appended" && repeat[6] !== 1) throw new Error("a re-sent append was not replayed");
      if (unflagged(repeat) !== unflagged(first)) {
        throw new Error(
          `a re-sent append answered ${JSON.stringify(repeat)}, first ${JSON.stringify(first)}`,
        );
      }
      return first;
    };
    store = createRedisStore(options);
  }
  return {
    store,
    command,
    keys,
    async close() {
      await store.close();
      subscriber.disconnect();
      await command.quit();
    },
  };
}

runStreamStoreContract("redis", (retention) => makeRedisStore(retention));
// Every append runs twice with the same arguments: a repeat must answer the first reply and write nothing.
runStreamStoreContract("redis, every append re-sent", (retention) =>
  makeRedisStore(retention, { resendEveryWrite: true }),
);

describe("redis store expiry", () => {
  let handle: Awaited<ReturnType<typeof makeRedisStore>>;
  let store: StreamStore;
  beforeAll(async () => {
    handle = await makeRedisStore({ endedSessionTtlSeconds: 60, idleSessionTtlSeconds: 3_600 });
    store = handle.store;
  });
  afterAll(() => handle?.close());

  it("an ended session's keys get the ended TTL", async () => {
    const id = uniqueId();
    await store.createSession(newSession(id));
    await store.append(id, [{ type: "token", data: { content: "a" } }]);
    const { command, keys } = handle;
    // Running: the idle TTL.
    expect(await command.ttl(keys.events(id))).toBeGreaterThan(60);
    expect(await command.ttl(keys.meta(id))).toBeGreaterThan(60);
    await store.append(id, [
      { type: "done", data: { session_id: id, total_tokens: 1, finish_reason: "stop" } },
    ]);
    for (const key of [keys.events(id), keys.meta(id)]) {
      const ttl = await command.ttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60);
    }
    expect(await command.exists(keys.lease(id))).toBe(0);
  });

  it("a session's keys share one Cluster hash tag", () => {
    const { keys } = handle;
    const tag = (key: string) => /\{([^}]*)\}/.exec(key)?.[1];
    expect(new Set([tag(keys.events("abc")), tag(keys.meta("abc")), tag(keys.lease("abc"))])).toEqual(
      new Set(["abc"]),
    );
  });

  it("a session whose keys expired reads as unknown", async () => {
    const id = uniqueId();
    await store.createSession(newSession(id));
    await store.append(id, [
      { type: "done", data: { session_id: id, total_tokens: 0, finish_reason: "stop" } },
    ]);
    await handle.command.pexpire(handle.keys.meta(id), 1);
    await handle.command.pexpire(handle.keys.events(id), 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await store.getSession(id)).toBeNull();
    expect(await store.read(id, null, 10)).toEqual({ events: [], gap: null });
  });
});
