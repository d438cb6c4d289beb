/**
 * The durable acknowledgements' scripts, called twice with the same arguments (ioredis re-sends a command
 * whose reply was lost): the same reply, and the data written once. On a redis-server of this file's
 * own, so that its change counter (`rdb_changes_since_last_save`) and its keyspace notifications count
 * this file's writes only.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeyScheme } from "../../src/store/keys.js";
import { type ScriptCall, script } from "../../src/store/scripts.js";
import { type RedisServerHandle, randomPrefix, startRedis } from "../helpers/index.js";

describe("confirm-1.lua and held-3.lua, called twice", () => {
  let server: RedisServerHandle;
  let redis: Redis;
  let listener: Redis;
  let confirm: ScriptCall<number>;
  let held: ScriptCall<number>;
  const keys = createKeyScheme(randomPrefix());
  let n = 0;
  const sessionId = () => `s${++n}`;
  /** Every keyspace event of the test's keys, in order (`hset`, `xadd`…), by key. */
  const keyEvents = new Map<string, string[]>();
  /** Notices published, by channel. */
  const notices = new Map<string, string[]>();

  async function changes(): Promise<number> {
    const info = await redis.info("persistence");
    return Number(/rdb_changes_since_last_save:(\d+)/.exec(info)![1]);
  }

  /** Waits for the listener to have heard everything published so far (a round trip on its connection). */
  async function heard(): Promise<void> {
    await listener.ping();
  }

  async function dump(...names: string[]): Promise<Array<Buffer | null>> {
    return Promise.all(names.map((name) => redis.dumpBuffer(name)));
  }

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    listener = new Redis(server.url);
    await redis.config("SET", "notify-keyspace-events", "KA");
    listener.on("pmessage", (_pattern: string, channel: string, message: string) => {
      if (channel.startsWith("__keyspace@0__:")) {
        const key = channel.slice("__keyspace@0__:".length);
        keyEvents.set(key, [...(keyEvents.get(key) ?? []), message]);
      } else {
        notices.set(channel, [...(notices.get(channel) ?? []), message]);
      }
    });
    await listener.psubscribe("__keyspace@0__:*", `${keys.notices("*")}`);
    confirm = script<number>(redis, "confirm-1");
    held = script<number>(redis, "held-3");
  });
  afterAll(async () => {
    listener?.disconnect();
    redis?.disconnect();
    await server?.dispose();
  });

  /** A session as the append script leaves it: its metadata hash and two events. */
  async function session(id: string): Promise<{ first: string; second: string }> {
    await redis.hset(keys.meta(id), "status", "running", "createdAt", "1");
    const first = (await redis.xadd(keys.events(id), "*", "t", "token", "d", '{"content":"a"}'))!;
    const second = (await redis.xadd(keys.events(id), "*", "t", "token", "d", '{"content":"b"}'))!;
    await redis.hset(keys.meta(id), "last", second);
    await heard();
    keyEvents.clear();
    return { first, second };
  }

  it("confirm-1: the same confirmation twice answers 1 twice and raises the position once", async () => {
    const id = sessionId();
    const { second } = await session(id);
    const call = () => confirm(keys.meta(id), second, keys.notices(id), `notice of ${second}`, "PUBLISH");
    const before = await changes();
    expect(await call()).toBe(1);
    const once = await dump(keys.meta(id), keys.events(id));
    expect(await changes()).toBe(before + 1);
    expect(await call()).toBe(1);
    // Nothing written the second time: the same data, no change counted, one hset heard.
    expect(await changes()).toBe(before + 1);
    expect(await dump(keys.meta(id), keys.events(id))).toEqual(once);
    expect(await redis.hget(keys.meta(id), "conf")).toBe(second);
    await heard();
    expect(keyEvents.get(keys.meta(id))).toEqual(["hset"]);
    // The notice goes out each time (a reader hearing it twice delivers nothing the second time).
    expect(notices.get(keys.notices(id))).toEqual([`notice of ${second}`, `notice of ${second}`]);
  });

  it("confirm-1: a repeat after a later confirmation does not lower the position", async () => {
    const id = sessionId();
    const { first, second } = await session(id);
    const early = () => confirm(keys.meta(id), first, keys.notices(id), "", "PUBLISH");
    expect(await early()).toBe(1);
    expect(await confirm(keys.meta(id), second, keys.notices(id), "", "PUBLISH")).toBe(1);
    const before = await changes();
    expect(await early()).toBe(1);
    expect(await changes()).toBe(before);
    expect(await redis.hget(keys.meta(id), "conf")).toBe(second);
  });

  it("confirm-1: twice for a session gone meanwhile writes nothing, and brings nothing back", async () => {
    const id = sessionId();
    const before = await changes();
    for (let i = 0; i < 2; i++) {
      expect(await confirm(keys.meta(id), "1-1", keys.notices(id), "", "PUBLISH")).toBe(1);
    }
    expect(await changes()).toBe(before);
    expect(await redis.exists(keys.meta(id))).toBe(0);
  });

  it("held-3: the same proof twice answers 1 twice, and its writes change nothing", async () => {
    const id = sessionId();
    const { second } = await session(id);
    await confirm(keys.meta(id), second, keys.notices(id), "", "PUBLISH");
    const call = () => held(keys.events(id), keys.snapshot(id), keys.meta(id), second);
    const data = await dump(keys.meta(id), keys.events(id), keys.snapshot(id));
    expect(await call()).toBe(1);
    expect(await call()).toBe(1);
    // It writes on purpose (the confirmed position, as it is: the WAIT after it then covers everything
    // this primary holds), one write per call, and the data stays as it was.
    expect(await dump(keys.meta(id), keys.events(id), keys.snapshot(id))).toEqual(data);
    expect(await redis.hget(keys.meta(id), "conf")).toBe(second);
    // Nothing confirmed yet: the position reads as 0-0, written as such, twice the same.
    const fresh = sessionId();
    const { first } = await session(fresh);
    expect(await held(keys.events(fresh), keys.snapshot(fresh), keys.meta(fresh), first)).toBe(1);
    const afterOne = await dump(keys.meta(fresh));
    expect(await held(keys.events(fresh), keys.snapshot(fresh), keys.meta(fresh), first)).toBe(1);
    expect(await dump(keys.meta(fresh))).toEqual(afterOne);
    expect(await redis.hget(keys.meta(fresh), "conf")).toBe("0-0");
  });

  it("held-3: a batch this primary does not hold answers 0 twice and writes nothing", async () => {
    const id = sessionId();
    const { second } = await session(id);
    // A batch after the newest event held here (written to a primary lost in a failover).
    const [ms, seq] = second.split("-").map(Number) as [number, number];
    const lost = `${ms}-${seq + 5}`;
    const before = await changes();
    for (let i = 0; i < 2; i++) {
      expect(await held(keys.events(id), keys.snapshot(id), keys.meta(id), lost)).toBe(0);
    }
    expect(await changes()).toBe(before);
    // And no session at all: 0 twice, nothing created.
    const gone = sessionId();
    for (let i = 0; i < 2; i++) {
      expect(await held(keys.events(gone), keys.snapshot(gone), keys.meta(gone), "1-1")).toBe(0);
    }
    expect(await changes()).toBe(before);
    expect(await redis.exists(keys.meta(gone), keys.events(gone))).toBe(0);
  });

  it("held-3: a batch folded into the snapshot since is held, twice the same", async () => {
    const id = sessionId();
    const { first, second } = await session(id);
    // Compaction folded both events into the snapshot and trimmed them.
    await redis.hset(keys.snapshot(id), "last", second);
    await redis.xtrim(keys.events(id), "MAXLEN", 0);
    const data = await dump(keys.events(id), keys.snapshot(id));
    for (let i = 0; i < 2; i++) {
      expect(await held(keys.events(id), keys.snapshot(id), keys.meta(id), first)).toBe(1);
    }
    expect(await dump(keys.events(id), keys.snapshot(id))).toEqual(data);
  });
});
