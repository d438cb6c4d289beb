/**
 * The PubSub contract: one suite that the in-process and the Redis links must both pass. Messages
 * published after `subscribe` resolved reach every handler of the channel, in publish order, on a
 * later turn than `publish` (never re-entering the publisher); nothing reaches a handler after its
 * `unsubscribe`, and channels never see each other's messages. Order across channels holds for
 * channels of one hash tag (one Redis Cluster slot: one shard's connection); on a cluster, channels on
 * different shards arrive on different connections, and nothing in the gateway orders them.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PubSub } from "../../src/store/pubsub.js";

export interface PubSubHandle {
  pubsub: PubSub;
  close(): Promise<void>;
}

export type MakePubSub = () => Promise<PubSubHandle>;

const WAIT_MS = 5_000;

const random = () => randomBytes(6).toString("base64url");
/** A channel with its own hash tag (on a cluster, any shard), or `tag`'s (the same shard as its other channels). */
const newChannel = (label = "c", tag = `{${random()}}`) => `${tag}:${label}:${random()}`;
const tagOf = (channel: string) => channel.slice(0, channel.indexOf("}") + 1);

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function runPubSubContract(name: string, make: MakePubSub): void {
  describe(`PubSub contract: ${name}`, () => {
    let handle: PubSubHandle;
    let pubsub: PubSub;
    beforeAll(async () => {
      handle = await make();
      pubsub = handle.pubsub;
    });
    afterAll(() => handle?.close());

    /**
     * A channel whose arrival proves every earlier publish of this link on `near`'s hash tag was
     * delivered (same order; on a cluster, the same shard and connection).
     */
    async function sentinel(near: string): Promise<() => Promise<void>> {
      const channel = newChannel("sentinel", tagOf(near));
      let arrived = 0;
      await pubsub.subscribe(channel, () => {
        arrived += 1;
      });
      return async () => {
        const expected = arrived + 1;
        await pubsub.publish(channel, "flush");
        await until(() => arrived === expected, "the sentinel");
      };
    }

    it("delivers a message published after subscribe resolved, on a later turn than publish", async () => {
      const channel = newChannel();
      const received: string[] = [];
      await pubsub.subscribe(channel, (message) => received.push(message));
      const published = pubsub.publish(channel, "hello");
      expect(received).toEqual([]);
      await published;
      await until(() => received.length === 1, "the message");
      expect(received).toEqual(["hello"]);
    });

    it("keeps publish order, within a channel and across channels of one hash tag", async () => {
      const tag = `{${random()}}`;
      const one = newChannel("one", tag);
      const two = newChannel("two", tag);
      const received: string[] = [];
      await pubsub.subscribe(one, (message) => received.push(`1:${message}`));
      await pubsub.subscribe(two, (message) => received.push(`2:${message}`));
      const expected: string[] = [];
      const sends: Array<Promise<void>> = [];
      for (let i = 0; i < 50; i++) {
        const channel = i % 3 === 0 ? two : one;
        sends.push(pubsub.publish(channel, String(i)));
        expected.push(`${channel === one ? 1 : 2}:${i}`);
      }
      await Promise.all(sends);
      await until(() => received.length === expected.length, "every message");
      expect(received).toEqual(expected);
    });

    it("delivers each message to every handler of the channel, once each", async () => {
      const channel = newChannel();
      const first: string[] = [];
      const second: string[] = [];
      const handler = (message: string) => first.push(message);
      await pubsub.subscribe(channel, handler);
      await pubsub.subscribe(channel, handler);
      await pubsub.subscribe(channel, (message) => second.push(message));
      await pubsub.publish(channel, "m");
      await until(() => first.length > 0 && second.length > 0, "both handlers");
      await (await sentinel(channel))();
      expect(first).toEqual(["m"]);
      expect(second).toEqual(["m"]);
    });

    it("handlers subscribing at once both hear a message published once both resolved", async () => {
      const channel = newChannel();
      const heard: string[] = [];
      await Promise.all([
        pubsub.subscribe(channel, (message) => heard.push(`a:${message}`)),
        pubsub.subscribe(channel, (message) => heard.push(`b:${message}`)),
      ]);
      await pubsub.publish(channel, "m");
      await until(() => heard.length === 2, "both handlers");
      expect(heard.sort()).toEqual(["a:m", "b:m"]);
    });

    it("an unsubscribed handler hears nothing more; the channel's other handlers still do", async () => {
      const channel = newChannel();
      const gone: string[] = [];
      const staying: string[] = [];
      const leaving = (message: string) => gone.push(message);
      await pubsub.subscribe(channel, leaving);
      await pubsub.subscribe(channel, (message) => staying.push(message));
      await pubsub.publish(channel, "before");
      await until(() => gone.length === 1 && staying.length === 1, "the first message");
      pubsub.unsubscribe(channel, leaving);
      await pubsub.publish(channel, "after");
      await until(() => staying.length === 2, "the second message");
      await (await sentinel(channel))();
      expect(gone).toEqual(["before"]);
      expect(staying).toEqual(["before", "after"]);
    });

    it("after the last handler left, the channel is silent; subscribing again at once hears new messages", async () => {
      const channel = newChannel();
      const first: string[] = [];
      const again: string[] = [];
      const handler = (message: string) => first.push(message);
      await pubsub.subscribe(channel, handler);
      pubsub.unsubscribe(channel, handler);
      const flush = await sentinel(channel);
      await pubsub.publish(channel, "nobody");
      await flush();
      expect(first).toEqual([]);

      // Unsubscribe and subscribe back to back: the second must win.
      const other = (message: string) => again.push(message);
      await pubsub.subscribe(channel, handler);
      pubsub.unsubscribe(channel, handler);
      await pubsub.subscribe(channel, other);
      await pubsub.publish(channel, "back");
      await until(() => again.length === 1, "the message after subscribing again");
      expect(again).toEqual(["back"]);
      expect(first).toEqual([]);
    });

    it("handlers changed by another during a delivery: only those subscribed when it arrived, and still then, hear it", async () => {
      const channel = newChannel();
      const heard: string[] = [];
      const late = (message: string) => heard.push(`late:${message}`);
      const removed = (message: string) => heard.push(`removed:${message}`);
      const changer = (message: string) => {
        heard.push(`changer:${message}`);
        if (message !== "first") return;
        pubsub.unsubscribe(channel, removed);
        void pubsub.subscribe(channel, late);
      };
      await pubsub.subscribe(channel, changer);
      await pubsub.subscribe(channel, removed);
      await pubsub.publish(channel, "first");
      await until(() => heard.length > 0, "the first message");
      await (await sentinel(channel))();
      await pubsub.publish(channel, "second");
      await until(() => heard.length >= 3, "the second message");
      await (await sentinel(channel))();
      expect(heard).toEqual(["changer:first", "changer:second", "late:second"]);
    });

    it("unsubscribing a handler that never subscribed is harmless", async () => {
      const channel = newChannel();
      const heard: string[] = [];
      pubsub.unsubscribe(channel, () => {});
      await pubsub.subscribe(channel, (message) => heard.push(message));
      pubsub.unsubscribe(channel, () => {});
      await pubsub.publish(channel, "m");
      await until(() => heard.length === 1, "the message");
    });

    it("a channel hears nothing published before it was subscribed, nor on other channels", async () => {
      const channel = newChannel();
      const other = newChannel();
      const heard: string[] = [];
      await pubsub.publish(channel, "too early");
      await pubsub.subscribe(channel, (message) => heard.push(message));
      await pubsub.subscribe(other, () => {});
      await pubsub.publish(other, "elsewhere");
      await pubsub.publish(channel, "m");
      await until(() => heard.length === 1, "the message");
      await (await sentinel(channel))();
      expect(heard).toEqual(["m"]);
    });
  });
}
