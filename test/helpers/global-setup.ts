/**
 * Vitest global setup: ONE redis-server, ONE Redis Cluster (6 nodes: 3 primaries with a replica
 * each) and ONE Sentinel set (a primary, a replica, 3 Sentinels: `inject("redisSentinels")`) for the
 * whole run, given to tests as `inject("redisUrl")` and `inject("redisClusterNodes")`
 * (`host:port,...`, the value of REDIS_CLUSTER_NODES). Tests isolate their keys with `randomPrefix()`;
 * tests that stop, restart or fail over Redis start their own.
 */
import type { TestProject } from "vitest/node";
import { startRedisCluster } from "./redis-cluster.js";
import { startSentinelSet } from "./redis-sentinel.js";
import { startRedis } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
    redisClusterNodes: string;
    /** A Sentinel set (a primary, a replica, 3 Sentinels): `host:port,...`, the value of REDIS_SENTINELS. */
    redisSentinels: string;
    redisSentinelName: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [redis, cluster, sentinel] = await Promise.all([
    startRedis(),
    startRedisCluster(),
    startSentinelSet(),
  ]);
  project.provide("redisUrl", redis.url);
  project.provide("redisClusterNodes", cluster.seeds);
  project.provide("redisSentinels", sentinel.sentinelsEnv);
  project.provide("redisSentinelName", sentinel.name);
  return async () => {
    await Promise.all([redis.stop(), cluster.stop(), sentinel.stop()]);
  };
}
