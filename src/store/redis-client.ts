/**
 * What the Redis parts (store, scripts, subscription sets, limiter) run on: one Redis (a URL, or the
 * primary Sentinel names) or a Redis Cluster. They use only what both route the same way: commands
 * whose keys share one slot, and scripts whose declared keys do (ioredis sends a Cluster's to the
 * node owning that slot, EVALSHA first and EVAL on NOSCRIPT, per node).
 */
import type { Cluster, Redis } from "ioredis";

export type RedisClient = Redis | Cluster;
