/** The pub/sub link over a real Redis: a refused SUBSCRIBE is reported, and retried on the next call. */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { randomPrefix } from "../helpers/index.js";

describe("redis pub/sub link", () => {
  const user = `pubsub_${Math.random().toString(36).slice(2, 10)}`;
  const allowed = `${randomPrefix()}allowed`;
  let admin: Redis;
  let subscriber: Redis;
  let publisher: Redis;

  beforeAll(async () => {
    admin = new Redis(inject("redisUrl"));
    // A user that may use every key and command, but only channels under `allowed`.
    await admin.call("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", "resetchannels", `&${allowed}*`);
    const url = new URL(inject("redisUrl"));
    const options = { host: url.hostname, port: Number(url.port), username: user, password: "pw" };
    subscriber = new Redis(options);
    publisher = new Redis(options);
  });

  afterAll(async () => {
    subscriber.disconnect();
    publisher.disconnect();
    await admin.call("ACL", "DELUSER", user);
    admin.disconnect();
  });

  it("reports a refused SUBSCRIBE every time instead of taking the channel for subscribed", async () => {
    const pubsub = createRedisPubSub(subscriber, publisher);
    const received: string[] = [];
    const denied = `${randomPrefix()}denied`;
    await expect(pubsub.subscribe(denied, (message) => received.push(message))).rejects.toThrow(/NOPERM/);
    await expect(pubsub.subscribe(denied, (message) => received.push(message))).rejects.toThrow(/NOPERM/);

    await pubsub.subscribe(`${allowed}:one`, (message) => received.push(message));
    await publisher.publish(`${allowed}:one`, "hello");
    await expect.poll(() => received).toEqual(["hello"]);
  });

  it("after a reconnect, tells its readers to re-read only once the channels are subscribed again", async () => {
    const own = new Redis(inject("redisUrl"));
    const command = new Redis(inject("redisUrl"));
    try {
      const id = await own.client("ID");
      const pubsub = createRedisPubSub(own, command);
      const channel = `${randomPrefix()}reconnect`;
      const received: string[] = [];
      await pubsub.subscribe(channel, (message) => received.push(message));
      let reReads = 0;
      pubsub.onReconnect(() => {
        reReads++;
        // What a reader's re-read races against: an append published the moment it reads.
        void command.publish(channel, "appended after the re-read");
      });
      await admin.call("CLIENT", "KILL", "ID", String(id));
      await expect.poll(() => reReads, { timeout: 10_000 }).toBe(1);
      await expect.poll(() => received).toEqual(["appended after the re-read"]);
    } finally {
      own.disconnect();
      command.disconnect();
    }
  });
});
