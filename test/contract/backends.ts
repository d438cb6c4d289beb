/**
 * The backend kinds that every contract suite (store, pub/sub, subscription sets, limiter) runs over,
 * each built through its own factory as the gateway builds it, the Redis kinds against this test run's
 * redis-server and Redis Cluster (global-setup.ts). Adding a kind here adds it to every suite.
 */
import { Redis } from "ioredis";
import { pino } from "pino";
import { inject } from "vitest";
import {
  type Backend,
  type ConnectionRole,
  connectToSentinels,
  createClusterBackend,
  createMemoryBackend,
  createRedisBackend,
} from "../../src/backend/index.js";
import { parseHostPorts } from "../../src/config.js";
import type { SubscriptionLimits } from "../../src/mux/subscriptions.js";
import { createKeyScheme, type KeyScheme } from "../../src/store/keys.js";
import type { RetentionOptions } from "../../src/store/session-fields.js";
import { randomPrefix } from "../helpers/index.js";
import { DEFAULT_RETENTION } from "./stream-store.contract.js";

export interface TestBackendOptions {
  /** Overrides of DEFAULT_RETENTION. */
  retention?: Partial<RetentionOptions>;
  subscriptionLimits?: SubscriptionLimits;
  /** The time the parts read; by default the real time, which `elapse` moves ahead on kinds that follow it. */
  clock?: () => number;
  /** Redis kinds: sees each connection as it is opened, before the parts use it (e.g. to wrap a command). */
  onConnection?: (client: Redis, role: ConnectionRole) => void;
}

export interface TestBackend {
  backend: Backend;
  /** Its own random prefix, and the key names built from it. */
  keyPrefix: string;
  keys: KeyScheme;
  /**
   * Lets `ms` pass for expiry: moves the default clock where the kind expires by it (memory), or waits
   * where the server keeps its own time (Redis).
   */
  elapse(ms: number): Promise<void>;
  close(): Promise<void>;
}

export interface RedisTestBackend extends TestBackend {
  /** The backend's command connection, to look at keys and run scripts (the backend closes it). */
  command: Redis;
}

export interface BackendKind<Built extends TestBackend = TestBackend> {
  name: string;
  build(options?: TestBackendOptions): Promise<Built>;
}

const DEFAULT_SUBSCRIPTION_LIMITS: SubscriptionLimits = { maxSessions: 100, ttlSeconds: 3_600 };
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What every kind is given, and a default clock that `elapse` can move. */
function common(options: TestBackendOptions) {
  const keyPrefix = randomPrefix();
  let aheadMs = 0;
  return {
    keyPrefix,
    keys: createKeyScheme(keyPrefix),
    backendOptions: {
      keyPrefix,
      retention: { ...DEFAULT_RETENTION, ...options.retention },
      subscriptionLimits: options.subscriptionLimits ?? DEFAULT_SUBSCRIPTION_LIMITS,
      clock: options.clock ?? (() => Date.now() + aheadMs),
    },
    moveClock(ms: number) {
      if (options.clock) throw new Error("the test owns this backend's clock: move it there");
      aheadMs += ms;
    },
  };
}

export const memoryBackend: BackendKind = {
  name: "memory",
  async build(options = {}) {
    const { keyPrefix, keys, backendOptions, moveClock } = common(options);
    const backend = createMemoryBackend(backendOptions);
    return {
      backend,
      keyPrefix,
      keys,
      async elapse(ms) {
        moveClock(ms);
      },
      close: () => backend.close(),
    };
  },
};

export const redisBackend: BackendKind<RedisTestBackend> = {
  name: "redis",
  async build(options = {}) {
    const { keyPrefix, keys, backendOptions } = common(options);
    let command: Redis | undefined;
    const backend = await createRedisBackend({
      ...backendOptions,
      instanceId: "contract",
      logger: pino({ level: "silent" }),
      connect(redisOptions, role) {
        const client = new Redis(inject("redisUrl"), redisOptions);
        if (role === "command") command = client;
        options.onConnection?.(client, role);
        return client;
      },
    });
    if (!command) throw new Error("the Redis backend opened no command connection");
    return {
      backend,
      keyPrefix,
      keys,
      command,
      // Redis expires keys by its own time.
      elapse: sleep,
      close: () => backend.close(),
    };
  },
};

/** `127.0.0.1:7000,127.0.0.1:7001` → the seed nodes, read as the gateway reads REDIS_CLUSTER_NODES. */
export function clusterSeeds(nodes: string): Array<{ host: string; port: number }> {
  const problems: string[] = [];
  const seeds = parseHostPorts("seeds", nodes, problems);
  if (problems.length > 0) throw new Error(problems.join("; "));
  return seeds;
}

/** A Redis Cluster (3 primaries, a replica each): keys and channels spread over the shards by their slot. */
export const clusterBackend: BackendKind = {
  name: "redis-cluster",
  async build(options = {}) {
    const { keyPrefix, keys, backendOptions } = common(options);
    const backend = await createClusterBackend({
      ...backendOptions,
      cluster: { nodes: clusterSeeds(inject("redisClusterNodes")) },
      instanceId: "contract",
      logger: pino({ level: "silent" }),
    });
    return {
      backend,
      keyPrefix,
      keys,
      // Redis expires keys by its own time.
      elapse: sleep,
      close: () => backend.close(),
    };
  },
};

/**
 * The same cluster with durable acknowledgements: appends go to the primary owning the session on a
 * connection of their own, each confirmed by a WAIT 1 on it (its replica), notices after it.
 */
export const clusterWaitBackend: BackendKind = {
  name: "redis-cluster-wait",
  async build(options = {}) {
    const { keyPrefix, keys, backendOptions } = common(options);
    const backend = await createClusterBackend({
      ...backendOptions,
      cluster: { nodes: clusterSeeds(inject("redisClusterNodes")) },
      instanceId: "contract",
      logger: pino({ level: "silent" }),
      durable: { replicas: 1, timeoutMs: 5_000 },
    });
    return { backend, keyPrefix, keys, elapse: sleep, close: () => backend.close() };
  },
};

/**
 * One Redis behind Sentinels (a primary and a replica), with durable acknowledgements: appends wait
 * for the replica (WAIT 1), notices go out after it, and reads stop at what it confirmed.
 */
export const sentinelBackend: BackendKind = {
  name: "redis-sentinel-wait",
  async build(options = {}) {
    const { keyPrefix, keys, backendOptions } = common(options);
    const connect = connectToSentinels({
      sentinels: clusterSeeds(inject("redisSentinels")),
      name: inject("redisSentinelName"),
    });
    const backend = await createRedisBackend({
      ...backendOptions,
      instanceId: "contract",
      logger: pino({ level: "silent" }),
      durable: { replicas: 1, timeoutMs: 5_000 },
      connect(redisOptions, role) {
        const client = connect(redisOptions, role);
        options.onConnection?.(client, role);
        return client;
      },
    });
    return {
      backend,
      keyPrefix,
      keys,
      elapse: sleep,
      close: () => backend.close(),
    };
  },
};

/** Every kind, in the order the suites run them. */
export const BACKENDS: readonly BackendKind[] = [
  memoryBackend,
  redisBackend,
  clusterBackend,
  clusterWaitBackend,
  sentinelBackend,
];
