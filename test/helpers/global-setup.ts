/**
 * Vitest global setup: ONE redis-server for the whole run, its URL given to tests as `inject("redisUrl")`.
 * Tests isolate their keys with `randomPrefix()`; tests that stop or restart Redis start their own.
 */
import type { TestProject } from "vitest/node";
import { startRedis } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await startRedis();
  project.provide("redisUrl", redis.url);
  return async () => {
    await redis.stop();
  };
}
