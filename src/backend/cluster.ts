/**
 * The Redis Cluster backend: the same parts as on one Redis (store, subscription sets, limiter) over
 * an ioredis `Cluster`, which sends each command and script to the primary owning its slot, and
 * pub/sub over sharded channels with one subscriber connection per primary (`cluster-pubsub.ts`).
 * Per instance, whatever the number of clients and sessions: two connections per primary (commands,
 * subscriber), three with durable acknowledgements (appends and their WAITs, `cluster-wait.ts`). Where
 * each shared key lives, and what it costs, is in docs/scaling.md.
 */
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { createRedisLimiter } from "../limits/limiter.js";
import type { Metrics } from "../metrics.js";
import { createRedisSubscriptions } from "../mux/subscriptions.js";
import { createKeyScheme } from "../store/keys.js";
import { createRedisStore } from "../store/redis-store.js";
import type { StreamStore } from "../store/types.js";
import { createShardedPubSub } from "./cluster-pubsub.js";
import { createClusterWrites } from "./cluster-wait.js";
import { type DurableAppendOptions, REDIS_CONNECTION_OPTIONS } from "./redis.js";
import { keySlot } from "./slots.js";
import type { Backend, BackendOptions, ConnectionState } from "./types.js";

/** Where the cluster is: seed nodes (any of its nodes; the rest are discovered) and how to reach them. */
export interface ClusterAddress {
  nodes: ReadonlyArray<{ host: string; port: number }>;
  username?: string | undefined;
  password?: string | undefined;
  /** TLS to every node (`rediss://` on one Redis). */
  tls?: boolean;
}

/**
 * How long commands for a shard that is failing over keep being retried (ioredis re-routes them after
 * each slot refresh): `CLUSTER_RETRY_DELAY_MS` apart, at most `CLUSTER_MAX_REDIRECTIONS` times, i.e.
 * at least two minutes, longer than a failover with the default cluster-node-timeout (15 s). Commands
 * wait through it as they wait through an outage of one Redis; every write is idempotent, so a
 * command sent again after its shard's primary died lands once.
 */
const CLUSTER_RETRY_DELAY_MS = 200;
const CLUSTER_MAX_REDIRECTIONS = 1_000;
const DEFAULT_LEASE_MS = 10_000;
const SLOTS_REFRESH_MS = 5_000;
const REPEAT_LOG_MS = 10_000;

export type ClusterMetrics = Pick<Metrics, "redisErrors"> &
  Partial<Pick<Metrics, "redisClusterEvents" | "setShardConnectionsProbe" | "redisWaitSeconds">>;

export interface ClusterBackendOptions extends BackendOptions {
  cluster: ClusterAddress;
  /**
   * The run lease period (LEASE_MS; 10 s by default). A shard that was down or whose slots changed
   * primary is left alone by the crash sweeper for this long once it is back, as the run manager does
   * after an outage of one Redis: the runs on it renew their leases first, instead of being ended as
   * interrupted because their renewals could not land during the failover.
   */
  leaseMs?: number;
  /** Names the connections in CLIENT LIST: `<instanceId>:command`, `:subscriber` (and `:appender`). */
  instanceId: string;
  logger: Logger;
  metrics?: ClusterMetrics;
  /**
   * Durable acknowledgements (REDIS_WAIT_REPLICAS): appends, and the WAIT confirming them, on a third
   * connection per primary; off without it (or with 0 replicas).
   */
  durable?: DurableAppendOptions | undefined;
}

const primaryConnections = (cluster: Cluster) =>
  new Map(cluster.nodes("master").map((node) => [`${node.options.host}:${node.options.port}`, node]));

/**
 * A primary's connections (command, subscriber, and appender with durable acknowledgements) and whether
 * each is up: what /readyz lists per shard.
 */
function shardConnections(
  cluster: Cluster,
  subscribers: ReadonlyArray<{ address: string; status: string }>,
  appender: Cluster | null,
) {
  const primaries = new Set<string>();
  for (const owners of cluster.slots) if (owners?.[0]) primaries.add(owners[0]);
  const commands = primaryConnections(cluster);
  const appenders = appender ? primaryConnections(appender) : null;
  const states: ConnectionState[] = [];
  const counts = new Map<string, number>();
  for (const address of [...primaries].sort()) {
    const subscriber = subscribers.find((candidate) => candidate.address === address);
    const roles: Array<[string, string]> = [
      ["command", commands.get(address)?.status ?? "none"],
      ["subscriber", subscriber?.status ?? "none"],
    ];
    if (appenders) roles.push(["appender", appenders.get(address)?.status ?? "none"]);
    for (const [role, status] of roles) {
      states.push({ name: `${role} ${address}`, ready: status === "ready", status });
    }
    counts.set(address, roles.filter(([, status]) => status === "ready").length);
  }
  return { states, counts, perShard: appenders ? 3 : 2 };
}

export async function createClusterBackend({
  cluster: address,
  instanceId,
  logger,
  metrics,
  keyPrefix,
  retention,
  subscriptionLimits,
  leaseMs = DEFAULT_LEASE_MS,
  clock = Date.now,
  durable,
}: ClusterBackendOptions): Promise<Backend> {
  /** When each primary was last lost, back after being lost, or given slots: see `leaseMs`. */
  const disturbedAt = new Map<string, number>();
  const disturb = (node: string) => disturbedAt.set(node, clock());
  const credentials: RedisOptions = {
    ...(address.username ? { username: address.username } : {}),
    ...(address.password ? { password: address.password } : {}),
    ...(address.tls ? { tls: {} } : {}),
  };
  const { retryStrategy } = REDIS_CONNECTION_OPTIONS;
  const clusterOptions: ClusterOptions = {
    // No auto-pipelining on a cluster: ioredis re-routes a pipeline only when all its errors are the
    // same, so during a failover a batch of several slots' commands came back as raw MOVED errors (a
    // stream answered 500). One command at a time is re-routed on its own, and was faster here
    // (appends 19,500/s against 14,600/s; reads 24,000/s against 30,000/s).
    enableAutoPipelining: false,
    lazyConnect: true,
    clusterRetryStrategy: retryStrategy,
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
    maxRedirections: CLUSTER_MAX_REDIRECTIONS,
    // The slot map is also asked for on a schedule (ioredis asks only after MOVED or a lost node by
    // default): a failover or a resharding is noticed, and shard channels moved, without traffic.
    slotsRefreshInterval: SLOTS_REFRESH_MS,
    // A node's connection is not retried by itself (ioredis's way in a cluster): a closed one ends, its
    // commands are routed again after a slot refresh, to the replica that took over if there was a failover.
    redisOptions: {
      ...credentials,
      maxRetriesPerRequest: null,
      connectionName: `${instanceId}:command`,
    },
  };
  const cluster = new Cluster(
    address.nodes.map((node) => ({ host: node.host, port: node.port })),
    clusterOptions,
  );
  // While a primary is gone, every routing or reconnection attempt fails the same way: each is
  // counted, and logged once per node and message per REPEAT_LOG_MS.
  const lastLogged = new Map<string, number>();
  const repeated = (key: string) => {
    const now = clock();
    if (now - (lastLogged.get(key) ?? Number.NEGATIVE_INFINITY) < REPEAT_LOG_MS) return true;
    lastLogged.set(key, now);
    return false;
  };
  const countError = (connection: "command" | "subscriber" | "appender", error: Error, node?: string) => {
    metrics?.redisErrors.inc({ connection });
    if (repeated(`${connection} ${node} ${error.message}`)) return;
    logger.warn({ err: { message: error.message }, node }, `redis cluster ${connection} connection error`);
  };
  cluster.on("error", (error: Error) => countError("command", error));
  cluster.on("node error", (error: Error, node: string) => countError("command", error, node));
  cluster.on("+node", (node: Redis) => {
    metrics?.redisClusterEvents?.inc({ event: "node_added" });
    logger.info(
      { node: `${node.options.host}:${node.options.port}` },
      "redis cluster: node connection added",
    );
  });
  cluster.on("-node", (node: Redis) => {
    const address = `${node.options.host}:${node.options.port}`;
    disturb(address);
    metrics?.redisClusterEvents?.inc({ event: "node_removed" });
    if (repeated(`-node ${address}`)) return;
    logger.warn({ node: address }, "redis cluster: node connection removed");
  });

  // A slot whose primary changed: a shard failed over (or was resharded). Logged with where it went.
  let owners: string[] = [];
  cluster.on("refresh", () => {
    const next = cluster.slots.map((nodes) => nodes?.[0] ?? "");
    const moves = new Map<string, number>();
    if (owners.length > 0) {
      for (let slot = 0; slot < next.length; slot++) {
        if (owners[slot] && next[slot] && owners[slot] !== next[slot]) {
          disturb(next[slot]!);
          const move = `${owners[slot]} -> ${next[slot]}`;
          moves.set(move, (moves.get(move) ?? 0) + 1);
        }
      }
    }
    owners = next;
    for (const [move, slots] of moves) {
      metrics?.redisClusterEvents?.inc({ event: "slots_moved" });
      logger.warn({ move, slots }, "redis cluster: slots have a new primary (failover or resharding)");
    }
    // Each primary's command connection is opened now, not at its first command: readiness and the
    // per-shard connection count then say the same on every instance.
    connectPrimaries(cluster);
  });

  // Durable acknowledgements: a cluster client of its own, whose node connections carry only appends and
  // their WAITs (a WAIT holds its connection until the replicas answer), routed by cluster-wait.ts.
  const appender =
    durable && durable.replicas > 0
      ? new Cluster(
          address.nodes.map((node) => ({ host: node.host, port: node.port })),
          {
            ...clusterOptions,
            redisOptions: { ...clusterOptions.redisOptions, connectionName: `${instanceId}:appender` },
          },
        )
      : null;
  if (appender) {
    appender.on("error", (error: Error) => countError("appender", error));
    appender.on("node error", (error: Error, node: string) => countError("appender", error, node));
    appender.on("refresh", () => connectPrimaries(appender));
  }
  const replicaWait =
    appender && durable
      ? createClusterWrites({
          cluster: appender,
          replicas: durable.replicas,
          timeoutMs: durable.timeoutMs,
          retryDelayMs: CLUSTER_RETRY_DELAY_MS,
          maxTries: CLUSTER_MAX_REDIRECTIONS,
          observe(node, seconds, confirmed, acknowledged) {
            metrics?.redisWaitSeconds?.observe({ outcome: confirmed ? "confirmed" : "short" }, seconds);
            if (!confirmed && !repeated(`wait ${node}`)) {
              logger.warn(
                { node, replicas: durable.replicas, acknowledged, waitedMs: Math.round(seconds * 1000) },
                "redis WAIT: fewer replicas than REDIS_WAIT_REPLICAS confirmed; appends are answered 503 and kept",
              );
            }
          },
        })
      : undefined;

  const pubsub = createShardedPubSub({
    cluster,
    openSubscriber(host, port) {
      const subscriber = new Redis({
        ...REDIS_CONNECTION_OPTIONS,
        ...credentials,
        host,
        port,
        // This module places the channels again itself, on the shard that owns them now.
        autoResubscribe: false,
        connectionName: `${instanceId}:subscriber`,
      });
      subscriber.on("error", (error: Error) => countError("subscriber", error, `${host}:${port}`));
      return subscriber;
    },
    // Lost, or back after being lost (a shard's first connection at start-up is no disturbance).
    onShardState(node, ready) {
      if (!ready || disturbedAt.has(node)) disturb(node);
    },
    onResubscribe(reason, node, channels) {
      metrics?.redisClusterEvents?.inc({ event: reason === "moved" ? "channels_moved" : "resubscribed" });
      logger.warn({ node, channels, reason }, "redis cluster: shard channels subscribed again");
    },
  });

  // An unreachable cluster at start-up is an outage like any other: /readyz says 503 until it answers.
  await Promise.all([cluster.connect(), appender?.connect()]).catch((error: unknown) => {
    logger.warn(
      { err: { message: String(error) } },
      "the Redis Cluster is not reachable yet; retrying in the background",
    );
  });

  const keys = createKeyScheme(keyPrefix);
  /** Whether the shard holding `key` has been up, on the same primary, for a whole lease period. */
  const settled = (key: string) => {
    const slot = keySlot(key);
    const owner = cluster.slots[slot]?.[0];
    // A new owner that the refresh handler has not seen yet (ioredis writes a MOVED's answer into its
    // slot map at once) has not started its lease period: not settled.
    if (owner === undefined || owner !== owners[slot]) return false;
    if (!pubsub.subscribers().some((shard) => shard.address === owner && shard.ready)) return false;
    const since = disturbedAt.get(owner);
    return since === undefined || clock() - since >= leaseMs;
  };
  // The Redis store as is, named for what it runs on (/readyz says `"store":"redis-cluster"`), whose
  // expired leases leave out those of a shard that is failing over or just did (see `leaseMs`).
  const redisStore = createRedisStore({
    redis: cluster,
    pubsub,
    keys,
    retention,
    clock,
    publishCommand: "SPUBLISH",
    onLateFailure: (error, sessionId) =>
      logger.warn(
        { err: { message: String(error) }, sessionId },
        "the lifecycle feed did not take a session's creation",
      ),
    ...(replicaWait ? { replicaWait } : {}),
  });
  const store: StreamStore = {
    ...redisStore,
    kind: "redis-cluster",
    async expiredLeases(nowMs, limit) {
      const expired = await redisStore.expiredLeases(nowMs, limit);
      return expired.filter((sessionId) => settled(keys.lease(sessionId)));
    },
  };
  const requestRecords = { requestRecordTtlSeconds: retention.requestRecordTtlSeconds };
  const connections = () => shardConnections(cluster, pubsub.subscribers(), appender);
  metrics?.setShardConnectionsProbe?.(() => connections().counts);

  return {
    kind: "redis-cluster",
    store,
    pubsub,
    subscriptions: createRedisSubscriptions(cluster, pubsub, keys, subscriptionLimits, requestRecords),
    limiter: createRedisLimiter(cluster, keyPrefix, clock, requestRecords),
    // Ready while the cluster answers and at least one shard is whole: a shard that fails over is the
    // same shard down for every instance, so taking them all out would stop the other shards' traffic
    // too. Its requests wait for it (reads within STORE_TIMEOUT_MS); the body names it meanwhile.
    readiness() {
      const { states, counts, perShard } = connections();
      const whole: ConnectionState = {
        name: "cluster",
        ready: cluster.status === "ready",
        status: cluster.status,
      };
      const anyShardUp = [...counts.values()].some((up) => up === perShard);
      return { ready: whole.ready && anyShardUp, connections: [whole, ...states] };
    },
    async close() {
      // The store closes the pub/sub (its subscribers); then the cluster's connections.
      await store.close();
      cluster.disconnect();
      appender?.disconnect();
    },
  };
}

/** Opens each primary's connection now, not at its first command (see the refresh handler). */
function connectPrimaries(cluster: Cluster): void {
  for (const node of cluster.nodes("master")) {
    if (node.status === "wait") node.connect().catch(() => {});
  }
}
