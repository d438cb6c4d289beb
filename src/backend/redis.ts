/**
 * The Redis backend: two connections per instance, however many clients and sessions (one for
 * commands, one for pub/sub), three with durable acknowledgements (appends and their WAITs on their
 * own, so a WAIT never holds up a read), opened through a connector, so that where Redis is (a URL, or
 * the primary a set of Sentinels names) is the connector's business and the options below hold for
 * every connection.
 */
import { Redis, type RedisOptions, type SentinelAddress } from "ioredis";
import type { Logger } from "pino";
import { createRedisLimiter } from "../limits/limiter.js";
import type { Metrics } from "../metrics.js";
import { createRedisSubscriptions } from "../mux/subscriptions.js";
import { createKeyScheme } from "../store/keys.js";
import { createRedisPubSub } from "../store/redis-pubsub.js";
import { createRedisStore } from "../store/redis-store.js";
import { createReplicaWait, type ReplicaWait } from "../store/replica-wait.js";
import { AT_ONCE_COMMANDS } from "../store/scripts.js";
import type { Backend, BackendOptions, ConnectionState } from "./types.js";

/** The options of every connection a Redis backend opens. */
export const REDIS_CONNECTION_OPTIONS = {
  // Commands wait through an outage instead of failing: open streams resume by themselves.
  maxRetriesPerRequest: null,
  // ioredis re-sends a command whose reply was lost (autoResendUnfulfilledCommands, on by default).
  // That is safe because every write is idempotent by construction: the scripts answer a repeated
  // request id or writer batch with their first reply, and the plain commands (lease SET/ZADD/DEL,
  // PUBLISH of cancels and set changes, EXPIRE) mean the same when applied twice.
  // Commands of one turn go in one write (at the event loop's check phase): Redis reads and answers
  // them together (without it, Redis spent 20–30 µs more CPU per producer append). The scripts on a run's way to its first
  // token (its admission, its session's creation, its appends) are written at once instead
  // (AT_ONCE_COMMANDS, scripts.ts): held to the check phase, they waited behind the turn's other work,
  // the SDK's request build and the rest of the model's burst (0.4 ms per run, bench/NOTES.md).
  enableAutoPipelining: true,
  autoPipeliningIgnoredCommands: [...AT_ONCE_COMMANDS],
  retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, 1000),
  // The backend connects itself, so that an unreachable Redis at start-up is reported, not thrown.
  lazyConnect: true,
  // A primary demoted by a failover answers writes with READONLY (and, being a replica, would answer
  // reads with what it has): reconnect, which asks the Sentinels for the primary again, and re-send
  // the command there (2), safe as above.
  reconnectOnError: (error: Error) => (/READONLY|MASTERDOWN/.test(error.message) ? 2 : false),
} satisfies RedisOptions;

/** `appender` exists only with durable acknowledgements (REDIS_WAIT_REPLICAS). */
export type ConnectionRole = "command" | "subscriber" | "appender";

/**
 * Opens one connection with the given options (lazyConnect: the backend connects it, watches it and
 * closes it). `role` is for connectors that treat the connections differently (tests wrap commands).
 */
export type RedisConnector = (options: RedisOptions, role: ConnectionRole) => Redis;

/** A connector to the Redis at `url` (`redis://` or `rediss://`, with user and password if any). */
export function connectToUrl(url: string): RedisConnector {
  return (options) => new Redis(url, options);
}

export interface SentinelOptions {
  sentinels: SentinelAddress[];
  /** The primary's name in the Sentinels' configuration. */
  name: string;
  /** The data nodes' credentials. */
  username?: string | undefined;
  password?: string | undefined;
  /** The Sentinels' own credentials. */
  sentinelUsername?: string | undefined;
  sentinelPassword?: string | undefined;
}

/**
 * A connector to the primary that `sentinels` name. ioredis asks them for the primary's address, checks
 * the node it reaches is a primary (role master) before it is ready, listens on the Sentinels for
 * `+switch-master` (failoverDetector) to drop a connection to a primary that was replaced, and on
 * every reconnect asks again: a failover is a reconnect to the new primary.
 */
export function connectToSentinels(sentinel: SentinelOptions): RedisConnector {
  return (options) =>
    new Redis({
      ...options,
      sentinels: sentinel.sentinels,
      name: sentinel.name,
      role: "master",
      failoverDetector: true,
      ...(sentinel.username ? { username: sentinel.username } : {}),
      ...(sentinel.password ? { password: sentinel.password } : {}),
      ...(sentinel.sentinelUsername ? { sentinelUsername: sentinel.sentinelUsername } : {}),
      ...(sentinel.sentinelPassword ? { sentinelPassword: sentinel.sentinelPassword } : {}),
      // While no Sentinel answers: try them again, as the connection's own retries do.
      sentinelRetryStrategy: REDIS_CONNECTION_OPTIONS.retryStrategy,
    });
}

export interface DurableAppendOptions {
  /** Replicas that must confirm an append (REDIS_WAIT_REPLICAS); 0: off. */
  replicas: number;
  /** One WAIT's bound (REDIS_WAIT_TIMEOUT_MS). */
  timeoutMs: number;
}

export interface RedisBackendOptions extends BackendOptions {
  connect: RedisConnector;
  /** Names the connections in CLIENT LIST: `<instanceId>:command` and `<instanceId>:subscriber`. */
  instanceId: string;
  logger: Logger;
  /** Connection errors and failovers by role, WAIT times; none counted without it. */
  metrics?: Partial<Pick<Metrics, "redisErrors" | "redisFailovers" | "redisWaitSeconds">>;
  /** Durable acknowledgements; off without it. */
  durable?: DurableAppendOptions;
}

export async function createRedisBackend({
  connect,
  instanceId,
  logger,
  metrics,
  durable,
  keyPrefix,
  retention,
  subscriptionLimits,
  clock = Date.now,
}: RedisBackendOptions): Promise<Backend> {
  const open = (role: ConnectionRole) => {
    const client = connect({ ...REDIS_CONNECTION_OPTIONS, connectionName: `${instanceId}:${role}` }, role);
    client.on("error", (error: Error) => {
      metrics?.redisErrors?.inc({ connection: role });
      logger.warn({ err: { message: error.message } }, `redis ${role} connection error`);
    });
    watchPrimary(client, role);
    return client;
  };
  // A connection that is ready again on another address than before followed a failover: counted and
  // logged once per connection. ioredis re-subscribes, and re-defines scripts (EVAL on NOSCRIPT) by itself.
  const watchPrimary = (client: Redis, role: ConnectionRole) => {
    let primary: string | null = null;
    client.on("ready", () => {
      const address = addressOf(client);
      if (primary !== null && address !== null && address !== primary) {
        metrics?.redisFailovers?.inc({ connection: role });
        logger.warn(
          { connection: role, from: primary, to: address },
          "redis failover: connected to a new primary",
        );
      } else if (primary !== null) {
        logger.info({ connection: role, primary: address }, "redis connection ready again");
      }
      if (address !== null) primary = address;
    });
  };
  const command = open("command");
  const subscriber = open("subscriber");
  const appender = durable && durable.replicas > 0 ? open("appender") : null;
  const replicaWait: ReplicaWait | undefined = appender
    ? createReplicaWait({
        connection: appender,
        replicas: durable!.replicas,
        timeoutMs: durable!.timeoutMs,
        observe(seconds, confirmed, acknowledged) {
          metrics?.redisWaitSeconds?.observe({ outcome: confirmed ? "confirmed" : "short" }, seconds);
          if (!confirmed) {
            logger.warn(
              { replicas: durable!.replicas, acknowledged, waitedMs: Math.round(seconds * 1000) },
              "redis WAIT: fewer replicas than REDIS_WAIT_REPLICAS confirmed; appends are answered 503 and kept",
            );
          }
        },
      })
    : undefined;
  const clients = appender ? [command, subscriber, appender] : [command, subscriber];
  // An unreachable Redis at start-up is an outage like any other: /readyz says 503 until it answers.
  await Promise.all(clients.map((client) => client.connect())).catch((error: unknown) => {
    logger.warn(
      { err: { message: String(error) } },
      "Redis is not reachable yet; retrying in the background",
    );
  });

  const keys = createKeyScheme(keyPrefix);
  const pubsub = createRedisPubSub(subscriber, command);
  const store = createRedisStore({
    redis: command,
    pubsub,
    keys,
    retention,
    clock,
    onLateFailure: (error, sessionId) =>
      logger.warn(
        { err: { message: String(error) }, sessionId },
        "the lifecycle feed did not take a session's creation",
      ),
    ...(replicaWait ? { replicaWait } : {}),
  });
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
      if (appender) connections.push(state("appender", appender));
      return { ready: connections.every((connection) => connection.ready), connections };
    },
    async close() {
      // The store closes the pub/sub link, which drops the subscriber already; dropping it again is harmless.
      await store.close();
      command.disconnect();
      subscriber.disconnect();
      appender?.disconnect();
    },
  };
}

/** `host:port` of the node a connection is on, or null when it has no socket. */
function addressOf(client: Redis): string | null {
  const socket = (client as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
  return socket?.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : null;
}
