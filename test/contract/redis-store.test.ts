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

async function makeRedisStore(
  retention: Partial<RetentionOptions> = {},
): Promise<StoreHandle & { command: Redis; keys: KeyScheme }> {
  const url = inject("redisUrl");
  const command = new Redis(url, { lazyConnect: true });
  const subscriber = new Redis(url, { lazyConnect: true });
  await Promise.all([command.connect(), subscriber.connect()]);
  const keys = createKeyScheme(randomPrefix());
  const pubsub = createRedisPubSub(subscriber, command);
  const store = createRedisStore({
    redis: command,
    pubsub,
    keys,
    retention: { ...DEFAULT_RETENTION, ...retention },
  });
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
