/**
 * Backends: the shared parts of the gateway behind one interface, one factory per kind
 * (`memory.ts`, `redis.ts`), and the one place that chooses the kind from the config.
 */
import type { Logger } from "pino";
import type { Config } from "../config.js";
import type { Metrics } from "../metrics.js";
import { createClusterBackend } from "./cluster.js";
import { createMemoryBackend } from "./memory.js";
import { connectToSentinels, connectToUrl, createRedisBackend } from "./redis.js";
import type { Backend, BackendOptions } from "./types.js";

export { type ClusterAddress, type ClusterBackendOptions, createClusterBackend } from "./cluster.js";
export { createMemoryBackend } from "./memory.js";
export {
  type ConnectionRole,
  connectToSentinels,
  connectToUrl,
  createRedisBackend,
  REDIS_CONNECTION_OPTIONS,
  type RedisBackendOptions,
  type RedisConnector,
} from "./redis.js";
export type { Backend, BackendKind, BackendOptions, ConnectionState, Readiness } from "./types.js";

/** The options every kind shares, from the config. */
export function backendOptionsFrom(config: Readonly<Config>): BackendOptions {
  return {
    keyPrefix: config.keyPrefix,
    retention: {
      maxEventsPerSession: config.maxEventsPerSession,
      lifecycleMaxEvents: config.lifecycleMaxEvents,
      endedSessionTtlSeconds: config.endedSessionTtlSeconds,
      idleSessionTtlSeconds: config.idleSessionTtlSeconds,
      requestRecordTtlSeconds: config.idempotencyTtlSeconds,
    },
    subscriptionLimits: {
      maxSessions: config.maxSessionsPerSubscription,
      ttlSeconds: config.subscriptionTtlSeconds,
    },
  };
}

export interface BackendDeps {
  instanceId: string;
  logger: Logger;
  metrics: Pick<
    Metrics,
    "redisErrors" | "redisFailovers" | "redisWaitSeconds" | "redisClusterEvents" | "setShardConnectionsProbe"
  >;
}

/**
 * The backend the config asks for: a Redis Cluster when `REDIS_CLUSTER_NODES` is set, Redis when
 * `REDIS_URL` is, the primary the Sentinels name when `REDIS_SENTINELS` is (with durable
 * acknowledgements when `REDIS_WAIT_REPLICAS` > 0, on any of the three), memory otherwise. The caller closes it.
 */
export async function createBackend(config: Readonly<Config>, deps: BackendDeps): Promise<Backend> {
  const options = backendOptionsFrom(config);
  const durable = config.redisWait;
  if (config.redisCluster) {
    return createClusterBackend({
      ...options,
      ...deps,
      cluster: config.redisCluster,
      leaseMs: config.leaseMs,
      durable,
    });
  }
  if (config.redisSentinel) {
    return createRedisBackend({
      ...options,
      ...deps,
      durable,
      connect: connectToSentinels(config.redisSentinel),
    });
  }
  if (config.redisUrl) {
    return createRedisBackend({ ...options, ...deps, durable, connect: connectToUrl(config.redisUrl) });
  }
  deps.logger.warn(
    "REDIS_URL is not set: using the in-memory store (one instance only; nothing survives a restart)",
  );
  return createMemoryBackend(options);
}
