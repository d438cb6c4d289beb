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
    // ioredis re-subscribes by itself; what it cannot restore is the messages published meanwhile.
    if (wasReady) for (const callback of reconnectCallbacks) callback();
    wasReady = true;
  });

  return {
    async subscribe(channel, handler) {
      if (router.add(channel, handler)) {
        const pending = subscriber.subscribe(channel).finally(() => subscribing.delete(channel));
        subscribing.set(channel, pending);
        await pending;
      } else {
        // Another caller's SUBSCRIBE may still be in flight: wait for it, or notices could be missed.
        await subscribing.get(channel);
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
