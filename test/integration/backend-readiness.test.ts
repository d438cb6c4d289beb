/**
 * Readiness comes from the backend, which knows its connections: /readyz names each one with its state,
 * and a backend with one connection down is unready and says which. The Redis backend closes the
 * connections it opened.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, describe, expect, inject, it } from "vitest";
import { type Backend, createRedisBackend, type Readiness } from "../../src/backend/index.js";
import type { AppContext } from "../../src/http/context.js";
import { healthRouter } from "../../src/http/health.js";
import { freePort, getJson, randomPrefix, startTestGateway } from "../helpers/index.js";

const RETENTION = {
  maxEventsPerSession: 100,
  lifecycleMaxEvents: 100,
  endedSessionTtlSeconds: 60,
  idleSessionTtlSeconds: 60,
  requestRecordTtlSeconds: 60,
};

/** The longest wait between reconnection attempts (REDIS_CONNECTION_OPTIONS.retryStrategy). */
const RETRY_MAX_MS = 1_000;

/** A Redis backend whose subscriber connection points at a port where nothing listens. */
async function backendWithSubscriberDown(opened: Redis[]): Promise<Backend> {
  const nowhere = `redis://127.0.0.1:${await freePort()}`;
  return createRedisBackend({
    keyPrefix: randomPrefix(),
    retention: RETENTION,
    subscriptionLimits: { maxSessions: 10, ttlSeconds: 60 },
    instanceId: "readiness",
    logger: pino({ level: "silent" }),
    connect(options, role) {
      const client = new Redis(role === "subscriber" ? nowhere : inject("redisUrl"), options);
      opened.push(client);
      return client;
    },
  });
}

/** /readyz alone, over a context that answers `readiness` as given. */
async function readyz(readiness: Readiness) {
  const context = {
    state: { draining: false },
    store: { kind: "redis" },
    readiness: () => readiness,
  } as unknown as AppContext;
  const server = createServer(express().use(healthRouter(context))).listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  try {
    return await getJson(`http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`);
  } finally {
    server.close();
  }
}

describe("backend readiness", () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
  });

  it("/readyz lists the connections: none for memory, command and subscriber for Redis", async () => {
    const memory = await startTestGateway();
    closers.push(() => memory.close());
    const redis = await startTestGateway({ redisUrl: inject("redisUrl") });
    closers.push(() => redis.close());
    expect((await getJson(`${memory.url}/readyz`)).body).toEqual({
      status: "ready",
      store: "memory",
      connections: {},
    });
    expect((await getJson(`${redis.url}/readyz`)).body).toEqual({
      status: "ready",
      store: "redis",
      connections: { command: "ready", subscriber: "ready" },
    });
  });

  it("a Redis backend with its subscriber down is unready and says which connection is down", async () => {
    const opened: Redis[] = [];
    const backend = await backendWithSubscriberDown(opened);
    try {
      // The start-up wait ends at the first failure: the command connection may still be connecting.
      await expect.poll(() => backend.readiness().connections[0]?.status).toBe("ready");
      const readiness = backend.readiness();
      expect(readiness.ready).toBe(false);
      expect(readiness.connections).toEqual([
        { name: "command", ready: true, status: "ready" },
        { name: "subscriber", ready: false, status: expect.not.stringMatching(/^ready$/) },
      ]);
      const res = await readyz(readiness);
      expect(res.status).toBe(503);
      expect(res.body).toEqual({
        error: { code: "unavailable", message: "the store (Redis) is unreachable" },
        connections: { command: "ready", subscriber: readiness.connections[1]!.status },
      });
    } finally {
      await backend.close();
    }
    // Whoever opens a connection closes it: both end with the backend. (ioredis leaves a connection that
    // was waiting to reconnect in `reconnecting`, with no timer left: it never tries again.)
    const [command, subscriber] = opened;
    let attempts = 0;
    subscriber?.on("reconnecting", () => attempts++);
    await expect.poll(() => command?.status).toBe("end");
    await new Promise((resolve) => setTimeout(resolve, RETRY_MAX_MS + 200));
    expect(attempts).toBe(0);
  });
});
