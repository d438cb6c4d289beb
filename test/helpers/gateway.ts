/** An in-process gateway on a real HTTP server (port 0), over the memory store, a real Redis or a real Redis Cluster. */
import type { Writable } from "node:stream";
import { pino } from "pino";
import { inject } from "vitest";
import type { ModelProvider } from "../../src/agent/types.js";
import { loadConfig } from "../../src/config.js";
import { createGateway, type Gateway } from "../../src/gateway.js";
import { listen } from "../../src/listen.js";
import { randomPrefix } from "./keys.js";

export interface TestGateway {
  url: string;
  gateway: Gateway;
  /** The key prefix this gateway uses in Redis. */
  prefix: string;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Omit (and `redisClusterNodes`) for the in-memory store. */
  redisUrl?: string;
  /** `host:port,...` of a Redis Cluster (REDIS_CLUSTER_NODES), instead of `redisUrl`. */
  redisClusterNodes?: string;
  /** Share a prefix between gateways (several instances on one Redis). */
  prefix?: string;
  env?: Record<string, string>;
  providers?: { openai?: ModelProvider; simulated: ModelProvider };
  /** Where the gateway's log lines go (with `LOG_LEVEL` in `env`); default: nowhere. */
  logDestination?: Writable;
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const prefix = options.prefix ?? randomPrefix();
  const config = loadConfig({
    LOG_LEVEL: "silent",
    SIMULATED_TOKENS_PER_SECOND: "1000",
    REDIS_KEY_PREFIX: prefix,
    ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
    ...(options.redisClusterNodes ? { REDIS_CLUSTER_NODES: options.redisClusterNodes } : {}),
    ...options.env,
  });
  const logger = options.logDestination
    ? pino({ level: config.logLevel }, options.logDestination)
    : pino({ level: config.logLevel });
  const gateway = await createGateway(config, {
    logger,
    defaultMetrics: false,
    ...(options.providers ? { providers: options.providers } : {}),
  });
  // Served as src/server.ts serves it.
  const { server, port } = await listen(gateway.app, config, 0, "127.0.0.1");
  return {
    url: `http://127.0.0.1:${port}`,
    gateway,
    prefix,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await gateway.close();
    },
  };
}

/** Runs a suite once per store: the same contract holds for memory, one Redis and a Redis Cluster. */
export const STORE_KINDS = ["memory", "redis", "redis-cluster"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/** What puts a test gateway on `kind`: this run's redis-server or Redis Cluster (global setup), or memory. */
export function storeOptions(kind: StoreKind): Pick<TestGatewayOptions, "redisUrl" | "redisClusterNodes"> {
  if (kind === "redis") return { redisUrl: inject("redisUrl") };
  if (kind === "redis-cluster") return { redisClusterNodes: inject("redisClusterNodes") };
  return {};
}
