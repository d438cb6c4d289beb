import type { Redis } from "ioredis";
import { ChannelRouter, type PubSub } from "./pubsub.js";

/**
 * Pub/sub over one dedicated subscriber connection per instance, however many channels are watched.
 * `publisher` is the instance's shared command connection.
 */
export function createRedisPubSub(subscriber: Redis, publisher: Redis): PubSub {
  const router = new ChannelRouter();
  const subscribing = new Map<string, Promise<unknown>>();
  const reconnectCallbacks: Array<() => void> = [];
  let wasReady = subscriber.status === "ready";

  subscriber.on("message", (channel: string, message: string) => router.dispatch(channel, message));
  subscriber.on("ready", () => {
    if (!wasReady) {
      wasReady = true;
      return;
    }
    // What the link cannot restore is the messages published while it was down: the callbacks re-read
    // the store. They run once the channels are subscribed again (ioredis re-subscribes only after
    // "ready" is emitted), so that whatever is appended after their read arrives as a message. A failed
    // SUBSCRIBE means the link dropped again: its next "ready" tries again.
    const channels = router.channels();
    const subscribed = channels.length > 0 ? subscriber.subscribe(...channels) : Promise.resolve();
    subscribed.then(
      () => {
        for (const callback of reconnectCallbacks) callback();
      },
      () => {},
    );
  });

  return {
    async subscribe(channel, handler) {
      const first = router.add(channel, handler);
      try {
        if (first) {
          const pending = subscriber.subscribe(channel);
          subscribing.set(channel, pending);
          try {
            await pending;
          } finally {
            subscribing.delete(channel);
          }
        } else {
          // Another caller's SUBSCRIBE may still be in flight: wait for it, or notices could be missed.
          await subscribing.get(channel);
        }
      } catch (error) {
        // Refused (e.g. NOPERM for this channel): forget the handler, so that a later call asks Redis
        // again instead of taking the channel for subscribed.
        router.remove(channel, handler);
        throw error;
      }
    },
    unsubscribe(channel, handler) {
      if (router.remove(channel, handler)) {
        subscriber.unsubscribe(channel).catch(() => {
          // The link is down; ioredis forgets the channel on its own when it is not re-subscribed.
        });
      }
    },
    async publish(channel, message) {
      await publisher.publish(channel, message);
    },
    onReconnect(callback) {
      reconnectCallbacks.push(callback);
    },
    async close() {
      subscriber.disconnect();
    },
  };
}
