import { Redis } from "ioredis";
import { inject } from "vitest";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { runPubSubContract } from "./pubsub.contract.js";

runPubSubContract("redis", async () => {
  const url = inject("redisUrl");
  const subscriber = new Redis(url, { lazyConnect: true });
  const publisher = new Redis(url, { lazyConnect: true });
  await Promise.all([subscriber.connect(), publisher.connect()]);
  const pubsub = createRedisPubSub(subscriber, publisher);
  return {
    pubsub,
    async close() {
      // The link closes its subscriber connection; the publisher is the caller's.
      await pubsub.close();
      await publisher.quit();
    },
  };
});
