/** The in-process backend: one instance only, nothing survives a restart, nothing external to close. */
import { createMemoryLimiter } from "../limits/limiter.js";
import { createMemorySubscriptions } from "../mux/subscriptions.js";
import { createKeyScheme } from "../store/keys.js";
import { createMemoryStore } from "../store/memory-store.js";
import { createMemoryPubSub } from "../store/pubsub.js";
import type { Backend, BackendOptions } from "./types.js";

export function createMemoryBackend({
  keyPrefix,
  retention,
  subscriptionLimits,
  clock = Date.now,
}: BackendOptions): Backend {
  const keys = createKeyScheme(keyPrefix);
  const pubsub = createMemoryPubSub();
  const store = createMemoryStore({ pubsub, keys, retention, clock });
  return {
    kind: "memory",
    store,
    pubsub,
    subscriptions: createMemorySubscriptions(pubsub, keys, subscriptionLimits, clock),
    limiter: createMemoryLimiter(clock),
    readiness: () => ({ ready: true, connections: [] }),
    async close() {
      await store.close();
    },
  };
}
