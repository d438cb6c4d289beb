/**
 * The Redis backend's store beyond the contract: the contract again with every append sent twice (as
 * ioredis re-sends a command whose reply was lost), and key expiry in Redis.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConnectionRole } from "../../src/backend/index.js";
import { script } from "../../src/store/scripts.js";
import type { StreamStore } from "../../src/store/types.js";
import { type RedisTestBackend, redisBackend } from "./backends.js";
import { newSession, runStreamStoreContract, uniqueId } from "./stream-store.contract.js";

/** How the store's scripts reach Redis. */
interface ScriptClient {
  gatewayAppend(this: unknown, ...args: unknown[]): Promise<unknown>;
}

/**
 * Sends each append of the command connection twice with the same arguments: the repeat must answer
 * the first reply (flagged as replayed) and write nothing. Installed before the store defines the script,
 * so the store calls this wrapper.
 */
function resendEveryAppend(client: Redis, role: ConnectionRole): void {
  if (role !== "command") return;
  script(client, "append-8");
  const scripted = client as unknown as ScriptClient;
  const append = scripted.gatewayAppend;
  async function twice(args: unknown[]): Promise<unknown> {
    const first = (await append.apply(client, args)) as unknown[];
    const repeat = (await append.apply(client, args)) as unknown[];
    // The repeat answers the first reply, flagged as replayed (reply[6]) where it was an append.
    const unflagged = (reply: unknown[]) =>
      JSON.stringify(reply[0] === "appended" ? [...reply.slice(0, 6), ...reply.slice(7)] : reply);
    if (first[0] === "appended" && repeat[6] !== 1) throw new Error("a re-sent append was not replayed");
    if (unflagged(repeat) !== unflagged(first)) {
      throw new Error(`a re-sent append answered ${JSON.stringify(repeat)}, first ${JSON.stringify(first)}`);
    }
    return first;
  }
  scripted.gatewayAppend = function (this: unknown, ...args: unknown[]) {
    // Auto-pipelining copies the client's script commands onto its pipeline, which must queue the
    // command as the original does (or each call would pipeline itself again).
    return this === client ? twice(args) : append.apply(this, args);
  };
}

runStreamStoreContract("redis, every append re-sent", async (retention) => {
  const { backend, close } = await redisBackend.build({ retention, onConnection: resendEveryAppend });
  return { store: backend.store, close };
});

describe("redis store expiry", () => {
  let handle: RedisTestBackend;
  let store: StreamStore;
  beforeAll(async () => {
    handle = await redisBackend.build({
      retention: { endedSessionTtlSeconds: 60, idleSessionTtlSeconds: 3_600 },
    });
    store = handle.backend.store;
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
    expect(await store.read(id, null, 10)).toEqual({ events: [], gap: null, createdAt: null });
  });
});
