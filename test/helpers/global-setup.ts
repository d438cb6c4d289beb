/**
 * Vitest global setup: ONE redis-server and ONE Redis Cluster (6 nodes: 3 primaries with a replica
 * each) for the whole run, given to tests as `inject("redisUrl")` and `inject("redisClusterNodes")`
 * (`host:port,...`, the value of REDIS_CLUSTER_NODES). Tests isolate their keys with `randomPrefix()`;
 * tests that stop, restart or fail over Redis start their own.
 */
import type { TestProject } from "vitest/node";
import { startRedisCluster } from "./redis-cluster.js";
import { startRedis } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
    redisClusterNodes: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [redis, cluster] = await Promise.all([startRedis(), startRedisCluster()]);
  project.provide("redisUrl", redis.url);
  project.provide("redisClusterNodes", cluster.seeds);
  return async () => {
    await Promise.all([redis.stop(), cluster.stop()]);
  };
}
