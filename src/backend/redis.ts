/**
 * The Redis backend: two connections per instance, however many clients and sessions (one for
 * commands, one for pub/sub), opened through a connector, so that where Redis is (a URL; Sentinels next)
 * is the connector's business and the options below hold for every connection.
 */
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { createRedisLimiter } from "../limits/limiter.js";
import type { Metrics } from "../metrics.js";
import { createRedisSubscriptions } from "../mux/subscriptions.js";
import { createKeyScheme } from "../store/keys.js";
import { createRedisPubSub } from "../store/redis-pubsub.js";
import { createRedisStore } from "../store/redis-store.js";
import type { Backend, BackendOptions, ConnectionState } from "./types.js";

/** The options of every connection a Redis backend opens. */
export const REDIS_CONNECTION_OPTIONS = {
  // Commands wait through an outage instead of failing: open streams resume by themselves.
  maxRetriesPerRequest: null,
  // ioredis re-sends a command whose reply was lost (autoResendUnfulfilledCommands, on by default).
  // That is safe because every write is idempotent by construction: the scripts answer a repeated
  // request id or writer batch with their first reply, and the plain commands (lease SET/ZADD/DEL,
  // PUBLISH of cancels and set changes, EXPIRE) mean the same when applied twice.
  enableAutoPipelining: true,
  retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, 1000),
  // The backend connects itself, so that an unreachable Redis at start-up is reported, not thrown.
  lazyConnect: true,
} satisfies RedisOptions;

export type ConnectionRole = "command" | "subscriber";

/**
 * Opens one connection with the given options (lazyConnect: the backend connects it, watches it and
 * closes it). `role` is for connectors that treat the connections differently (tests wrap commands).
 */
export type RedisConnector = (options: RedisOptions, role: ConnectionRole) => Redis;

/** A connector to the Redis at `url` (`redis://` or `rediss://`, with user and password if any). */
export function connectToUrl(url: string): RedisConnector {
  return (options) => new Redis(url, options);
}

export interface RedisBackendOptions extends BackendOptions {
  connect: RedisConnector;
  /** Names the connections in CLIENT LIST: `<instanceId>:command` and `<instanceId>:subscriber`. */
  instanceId: string;
  logger: Logger;
  /** Counts connection errors by role (`sse_redis_errors_total`); none counted without it. */
  metrics?: Pick<Metrics, "redisErrors">;
}

export async function createRedisBackend({
  connect,
  instanceId,
  logger,
  metrics,
  keyPrefix,
  retention,
  subscriptionLimits,
  clock = Date.now,
}: RedisBackendOptions): Promise<Backend> {
  const open = (role: ConnectionRole) => {
    const client = connect({ ...REDIS_CONNECTION_OPTIONS, connectionName: `${instanceId}:${role}` }, role);
    client.on("error", (error: Error) => {
      metrics?.redisErrors.inc({ connection: role });
      logger.warn({ err: { message: error.message } }, `redis ${role} connection error`);
    });
    return client;
  };
  const command = open("command");
  const subscriber = open("subscriber");
  // An unreachable Redis at start-up is an outage like any other: /readyz says 503 until it answers.
  await Promise.all([command.connect(), subscriber.connect()]).catch((error: unknown) => {
    logger.warn(
      { err: { message: String(error) } },
      "Redis is not reachable yet; retrying in the background",
    );
  });

  const keys = createKeyScheme(keyPrefix);
  const pubsub = createRedisPubSub(subscriber, command);
  const store = createRedisStore({ redis: command, pubsub, keys, retention, clock });
  const requestRecords = { requestRecordTtlSeconds: retention.requestRecordTtlSeconds };
  const state = (name: ConnectionRole, client: Redis): ConnectionState => ({
    name,
    ready: client.status === "ready",
    status: client.status,
  });
  return {
    kind: "redis",
    store,
    pubsub,
    subscriptions: createRedisSubscriptions(command, pubsub, keys, subscriptionLimits, requestRecords),
    limiter: createRedisLimiter(command, keyPrefix, clock, requestRecords),
    readiness() {
      const connections = [state("command", command), state("subscriber", subscriber)];
      return { ready: connections.every((connection) => connection.ready), connections };
    },
    async close() {
      // The store closes the pub/sub link, which drops the subscriber already; dropping it again is harmless.
      await store.close();
      command.disconnect();
      subscriber.disconnect();
    },
  };
}
