/**
 * Sharded pub/sub on this run's Redis Cluster, beyond the PubSub contract: the slot of a name as the
 * server computes it, one subscriber connection per primary however many channels, and a shard
 * connection that is killed comes back subscribed, after telling its listeners to resync.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClusterBackend } from "../../src/backend/cluster.js";
import { keySlot } from "../../src/backend/slots.js";
import type { Backend } from "../../src/backend/types.js";
import { clusterSeeds } from "../contract/backends.js";
import { DEFAULT_RETENTION } from "../contract/stream-store.contract.js";
import { randomPrefix } from "../helpers/index.js";

const WAIT_MS = 15_000;

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("sharded pub/sub on a Redis Cluster", () => {
  const seeds = () => clusterSeeds(inject("redisClusterNodes"));
  const instanceId = `cluster-pubsub-${randomBytes(4).toString("hex")}`;
  let backend: Backend;
  let nodes: Redis[] = [];

  beforeAll(async () => {
    backend = await createClusterBackend({
      keyPrefix: randomPrefix(),
      retention: DEFAULT_RETENTION,
      subscriptionLimits: { maxSessions: 100, ttlSeconds: 3_600 },
      cluster: { nodes: seeds() },
      instanceId,
      logger: pino({ level: "silent" }),
    });
    nodes = seeds().map((seed) => new Redis({ host: seed.host, port: seed.port }));
  });
  afterAll(async () => {
    await backend?.close();
    for (const node of nodes) node.disconnect();
  });

  /** This backend's subscriber connections on each node (CLIENT LIST by connection name). */
  async function subscribersPerNode(): Promise<number[]> {
    return Promise.all(
      nodes.map(async (node) => {
        const list = (await node.call("CLIENT", "LIST")) as string;
        return list.split("\n").filter((line) => line.includes(`name=${instanceId}:subscriber `)).length;
      }),
    );
  }

  it("computes every slot as the server does (hash tags included)", async () => {
    const names = [
      "plain",
      "sse:s:{abc}:events",
      "{}empty-tag",
      "{a}{b}",
      "x{}{y}",
      "{unclosed",
      "sse:n:{sess_é}",
      ...Array.from({ length: 40 }, () => `k:{${randomBytes(5).toString("base64url")}}:v`),
    ];
    for (const name of names) {
      expect(keySlot(name), name).toBe(Number(await nodes[0]!.call("CLUSTER", "KEYSLOT", name)));
    }
  });

  it("holds one subscriber connection per primary, however many channels", async () => {
    const heard = new Set<string>();
    const channels = Array.from({ length: 300 }, (_, i) => `n:{${randomBytes(6).toString("hex")}-${i}}`);
    await Promise.all(channels.map((channel) => backend.pubsub.subscribe(channel, () => heard.add(channel))));
    await Promise.all(channels.map((channel) => backend.pubsub.publish(channel, "m")));
    await until(() => heard.size === channels.length, "a message on every channel");
    const perNode = await subscribersPerNode();
    // 3 primaries with one each; replicas none.
    expect(perNode.filter((count) => count === 1)).toHaveLength(3);
    expect(perNode.filter((count) => count === 0)).toHaveLength(3);
    expect(backend.readiness()).toMatchObject({ ready: true });
    expect(
      backend
        .readiness()
        .connections.map((state) => state.name.split(" ")[0])
        .sort(),
    ).toEqual(["cluster", "command", "command", "command", "subscriber", "subscriber", "subscriber"]);
  });

  it("a killed shard connection comes back subscribed, after asking its listeners to resync", async () => {
    let resyncs = 0;
    backend.pubsub.onReconnect(() => {
      resyncs++;
    });
    const heard: string[] = [];
    const channel = `n:{${randomBytes(6).toString("hex")}}`;
    await backend.pubsub.subscribe(channel, (message) => heard.push(message));
    // Only this backend's subscribers: other files share the cluster.
    for (const node of nodes) {
      const list = (await node.call("CLIENT", "LIST")) as string;
      for (const line of list
        .split("\n")
        .filter((entry) => entry.includes(`name=${instanceId}:subscriber `))) {
        await node.call("CLIENT", "KILL", "ID", /\bid=(\d+)/.exec(line)![1]!);
      }
    }
    await until(() => resyncs > 0, "a resync");
    await until(async () => {
      await backend.pubsub.publish(channel, "after");
      return heard.includes("after");
    }, "a message after the reconnection");
    expect(await subscribersPerNode()).toEqual(expect.arrayContaining([1, 1, 1, 0, 0, 0]));
  });
});
