import { createMemoryBackend } from "../../src/backend/index.js";
import type { RetentionOptions } from "../../src/store/session-fields.js";

/** An in-memory store (the memory backend's, with its own pub/sub), for unit tests of what sits on a store. */
export function testMemoryStore(retention: Partial<RetentionOptions> = {}) {
  return createMemoryBackend({
    keyPrefix: "t:",
    retention: {
      maxEventsPerSession: 1000,
      lifecycleMaxEvents: 1000,
      endedSessionTtlSeconds: 60,
      idleSessionTtlSeconds: 60,
      requestRecordTtlSeconds: 600,
      ...retention,
    },
    subscriptionLimits: { maxSessions: 100, ttlSeconds: 3_600 },
  }).store;
}
