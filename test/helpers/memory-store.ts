import { createKeyScheme } from "../../src/store/keys.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createMemoryPubSub } from "../../src/store/pubsub.js";
import type { RetentionOptions } from "../../src/store/session-fields.js";

/** An in-memory store with its own pub/sub, for unit tests of what sits on a store. */
export function testMemoryStore(retention: Partial<RetentionOptions> = {}) {
  return createMemoryStore({
    pubsub: createMemoryPubSub(),
    keys: createKeyScheme("t:"),
    retention: {
      maxEventsPerSession: 1000,
      lifecycleMaxEvents: 1000,
      endedSessionTtlSeconds: 60,
      idleSessionTtlSeconds: 60,
      requestRecordTtlSeconds: 600,
      ...retention,
    },
  });
}
