/**
 * End to end on a real Redis Cluster (6 redis-server processes: 3 primaries with a replica each,
 * started by this file) with gateway PROCESSES on REDIS_CLUSTER_NODES:
 *  - one multiplexed connection reads sessions on all 3 shards and resumes on another instance,
 *    exactly (every event once, the upstream's text); reads of sessions on different shards
 *    proceed in parallel (a shard paused with CLIENT PAUSE holds up only its own session's);
 *  - a subscription set changed on one instance reaches a connection on another, with a session of
 *    each shard; a cancel sent to one instance ends a run on another; the crash sweeper ends the runs
 *    of a killed instance with `interrupted`;
 *  - with 300 clients, every node counts the same connections (CLIENT LIST) as with 1;
 *  - a shard's primary is SIGKILLed while readers read and runs stream: its replica takes over,
 *    every reader ends and every run has one terminal event. Without durable acknowledgements what
 *    was lost, if anything, is reported in the test output, not as a failure;
 *  - on a second cluster, with REDIS_WAIT_REPLICAS=1: an append is answered once its shard's replica
 *    holds it (503 and unseen while that replica is stopped, delivered once it is back), and in the
 *    same failover every reader ends with exactly the upstream's text: a loss fails the test.
 */

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createSimulatedProvider } from "../../src/agent/simulated-provider.js";
import { createClusterBackend } from "../../src/backend/cluster.js";
import { createKeyScheme, type KeyScheme } from "../../src/store/keys.js";
import { clusterSeeds } from "../contract/backends.js";
import { DEFAULT_RETENTION } from "../contract/stream-store.contract.js";
import {
  collectUntilClosed,
  getJson,
  openSse,
  patchJson,
  postJson,
  randomPrefix,
  type SseConnection,
  type SseEvent,
} from "../helpers/index.js";
import { type ClusterNode, type RedisClusterHandle, startRedisCluster } from "../helpers/redis-cluster.js";
import {
  createInstances,
  e2eGatewayEnv,
  ensureRunning,
  type GatewayInstance,
  logTails,
} from "./helpers/cluster.js";
import type { ResilientMuxClient } from "./helpers/mux-client.js";
import { waitUntil } from "./helpers/process.js";
import { setupSuite } from "./helpers/setup.js";
import { readStoredSession, readStoredSessions, storyProblems, terminalOf } from "./helpers/verify.js";
import { coverage, finishAll, makeClients, startReading, startRuns } from "./helpers/workload.js";

const TERMINAL = new Set(["done", "error", "cancelled"]);
const CLIENT_TIMEOUT_MS = 90_000;

/** What the simulated model streams for `prompt`: the upstream's exact text, computed here without pacing. */
async function upstreamText(prompt: string): Promise<string> {
  const provider = createSimulatedProvider({ tokensPerSecond: 1_000, sleep: async () => {} });
  let text = "";
  const signal = new AbortController().signal;
  for await (const chunk of provider.stream({
    model: "simulated",
    messages: [{ role: "user", content: prompt }],
    signal,
  })) {
    if (chunk.kind === "token") text += chunk.content;
  }
  return text;
}

const promptOf = (tag: string, tokens: number) => `e2e ${tag} [tokens=${tokens}]`;

/** A multiplexed event's session and type (`<session>:<type>`), or null for connection-level events. */
function split(event: SseEvent): { session: string; type: string } | null {
  const colon = event.event.indexOf(":");
  return colon < 0 ? null : { session: event.event.slice(0, colon), type: event.event.slice(colon + 1) };
}

function textOf(events: ReadonlyArray<{ type: string; data: unknown }>): string {
  return events
    .filter((event) => event.type === "token")
    .map((event) => (event.data as { content: string }).content)
    .join("");
}

/** CLIENT LIST of every running node: its gateway connections (named `<instance>:<role>`) by role. */
async function gatewayConnections(cluster: RedisClusterHandle): Promise<Record<string, string>> {
  const counts: Record<string, string> = {};
  for (const node of cluster.nodes.filter((candidate) => candidate.running)) {
    const redis = cluster.connect(node.port);
    try {
      const list = (await redis.call("CLIENT", "LIST")) as string;
      const names = list
        .split("\n")
        .map((line) => /\bname=(\S*)/.exec(line)?.[1] ?? "")
        .filter((name) => name.endsWith(":command") || name.endsWith(":subscriber"));
      const command = names.filter((name) => name.endsWith(":command")).length;
      counts[node.address] = `command=${command} subscriber=${names.length - command}`;
    } finally {
      redis.disconnect();
    }
  }
  return counts;
}

describe("e2e: gateway processes on a 3-shard Redis Cluster", () => {
  let cluster: RedisClusterHandle | undefined;
  let instances: GatewayInstance[] = [];
  const keyPrefix = randomPrefix();
  const keys = createKeyScheme(keyPrefix);
  const open: SseConnection[] = [];
  const readers: ResilientMuxClient[] = [];

  const suite = setupSuite(async () => {
    cluster = await startRedisCluster();
    const { REDIS_URL: _unused, ...env } = e2eGatewayEnv("", keyPrefix);
    instances = await createInstances(["a", "b", "c"], { ...env, REDIS_CLUSTER_NODES: cluster.seeds });
    await ensureRunning(instances);
  }, 180_000);

  afterAll(async () => {
    for (const connection of open) connection.close();
    for (const reader of readers) reader.close();
    await Promise.all(instances.map((instance) => instance.stop()));
    await cluster?.stop();
  }, 60_000);

  const context = () => logTails(instances);

  /** `perShard` new session ids on each primary (ids whose slot the primary serves). */
  async function idsOnEveryShard(tag: string, perShard: number): Promise<Map<string, string[]>> {
    const primaries = await cluster!.primaries();
    const byShard = new Map<string, string[]>(primaries.map((address) => [address, []]));
    for (let i = 0; [...byShard.values()].some((ids) => ids.length < perShard); i++) {
      const id = `${tag}-${i}`;
      const ids = byShard.get(await cluster!.primaryOf(keys.events(id)))!;
      if (ids.length < perShard) ids.push(id);
    }
    return byShard;
  }

  async function startRun(instance: GatewayInstance, id: string, prompt: string): Promise<void> {
    const res = await postJson(`${instance.url}/api/v1/sessions`, { id, message: prompt });
    expect(res.status, res.text).toBe(201);
  }

  it("reads sessions on all 3 shards on one connection and resumes exactly on another instance", async () => {
    suite.assertReady();
    const [a, b] = instances as [GatewayInstance, GatewayInstance];
    const byShard = await idsOnEveryShard("spread", 2);
    const ids = [...byShard.values()].flat();
    const tokens = 80;
    await Promise.all(ids.map((id) => startRun(a, id, promptOf(id, tokens))));

    const first = await openSse(`${a.url}/api/v1/stream?sessions=${ids.join(",")}`);
    open.push(first);
    // Part of every session on A, then the rest on B from the last cursor.
    await first.waitFor(
      (events) =>
        ids.every((id) =>
          events.some((event) => split(event)?.session === id && split(event)?.type === "token"),
        ),
      30_000,
    );
    first.close();
    const cursor = first.events.filter((event) => event.id !== undefined).at(-1)?.id;
    expect(cursor).toBeDefined();
    const second = await collectUntilClosed(`${b.url}/api/v1/stream?sessions=${ids.join(",")}`, {
      lastEventId: cursor!,
      timeoutMs: 60_000,
    });
    expect(second.status).toBe(200);

    const received = new Map<string, Array<{ type: string; data: unknown }>>(ids.map((id) => [id, []]));
    const upToCursor = first.events.slice(0, first.events.findLastIndex((event) => event.id === cursor) + 1);
    for (const event of [...upToCursor, ...second.events]) {
      const parts = split(event);
      if (parts) received.get(parts.session)?.push({ type: parts.type, data: JSON.parse(event.data) });
    }
    for (const id of ids) {
      const stored = await readStoredSession(a.url, id);
      const got = received.get(id)!;
      expect(
        got.map((event) => event.type),
        `${id}\n${context()}`,
      ).toEqual(stored.events.map((event) => event.type));
      expect(textOf(got), id).toBe(await upstreamText(promptOf(id, tokens)));
      expect(got.filter((event) => TERMINAL.has(event.type)).map((event) => event.type)).toEqual(["done"]);
    }
  });

  it("reads of sessions on several shards proceed in parallel: a paused shard holds up only its own", async () => {
    suite.assertReady();
    const [a] = instances as [GatewayInstance];
    const byShard = [...(await idsOnEveryShard("paused", 1)).entries()];
    const [pausedShard, [pausedId]] = byShard[0]! as [string, [string]];
    const ids = byShard.flatMap(([, shardIds]) => shardIds);
    for (const id of ids) {
      const res = await postJson(`${a.url}/api/v1/sessions/${id}/events`, {
        events: ["one ", "two ", "three"].map((content) => ({ type: "token", data: { content } })),
      });
      expect(res.status, res.text).toBe(202);
    }
    // The store as a multiplexed connection's catch-up uses it: its reads of several sessions at once.
    const backend = await createClusterBackend({
      keyPrefix,
      retention: DEFAULT_RETENTION,
      subscriptionLimits: { maxSessions: 100, ttlSeconds: 3_600 },
      cluster: { nodes: clusterSeeds(cluster!.seeds) },
      instanceId: "parallel-reads",
      logger: pino({ level: "silent" }),
    });
    const admin = cluster!.connect(Number(pausedShard.slice(pausedShard.lastIndexOf(":") + 1)));
    try {
      await backend.store.read(pausedId, null, 10); // connected to every shard before the pause
      // The shard stops answering its clients for 3 s (its replica and the cluster bus go on: no failover).
      await admin.call("CLIENT", "PAUSE", "3000", "ALL");
      const answered: string[] = [];
      const reads = await Promise.all(
        ids.map(async (id) => {
          const read = await backend.store.read(id, null, 10);
          answered.push(id);
          return read;
        }),
      );
      expect(answered.at(-1), `answered in the order ${answered.join(", ")}`).toBe(pausedId);
      for (const read of reads)
        expect(read.events.map((event) => event.type)).toEqual(["token", "token", "token"]);
    } finally {
      admin.disconnect();
      await backend.close();
    }
  });

  it("a subscription set changed on one instance reaches a connection on another, a session per shard", async () => {
    suite.assertReady();
    const [a, b] = instances as [GatewayInstance, GatewayInstance];
    const byShard = await idsOnEveryShard("subset", 1);
    const ids = [...byShard.values()].flat();
    const created = await postJson(`${a.url}/api/v1/subscriptions`, { sessions: [ids[0]] });
    expect(created.status, created.text).toBe(201);
    const sid = created.body.id as string;
    const follower = await openSse(`${b.url}/api/v1/stream?subscription=${sid}`);
    open.push(follower);
    await follower.waitForEvent("connected");
    const changed = await patchJson(`${a.url}/api/v1/subscriptions/${sid}`, { add: ids.slice(1) });
    expect(changed.status, changed.text).toBe(200);
    await follower.waitForEvent("subscribed", 15_000);
    await Promise.all(ids.map((id) => startRun(a, id, promptOf(id, 20))));
    await follower.waitFor(
      (events) => ids.every((id) => events.some((event) => event.event === `${id}:done`)),
      60_000,
    );
    for (const id of ids) {
      const got = follower.events
        .filter((event) => split(event)?.session === id)
        .map((event) => ({ type: split(event)!.type, data: JSON.parse(event.data) as unknown }));
      expect(textOf(got), id).toBe(await upstreamText(promptOf(id, 20)));
    }
    follower.close();
  });

  it("a cancel sent to one instance ends a run on another (control channel on its own shard)", async () => {
    suite.assertReady();
    const [a, b] = instances as [GatewayInstance, GatewayInstance];
    const ids = [...(await idsOnEveryShard("cancel", 1)).values()].flat();
    await Promise.all(ids.map((id) => startRun(a, id, promptOf(id, 2_000))));
    const reader = await openSse(`${b.url}/api/v1/stream?sessions=${ids.join(",")}`);
    open.push(reader);
    await reader.waitFor(
      (events) => ids.every((id) => events.some((event) => event.event === `${id}:token`)),
      30_000,
    );
    for (const id of ids) {
      const res = await postJson(`${b.url}/api/v1/sessions/${id}/cancel`, {});
      expect(res.status, res.text).toBe(202);
    }
    await reader.waitFor(
      (events) => ids.every((id) => events.some((event) => event.event === `${id}:cancelled`)),
      30_000,
    );
    const stored = await readStoredSessions(b.url, ids);
    expect(storyProblems(stored), context()).toEqual([]);
    for (const session of stored.values()) {
      expect(terminalOf(session)).toMatchObject({ type: "cancelled", data: { reason: "requested" } });
    }
    reader.close();
  });

  it("the crash sweeper ends a killed instance's runs, on every shard, with interrupted", async () => {
    suite.assertReady();
    const [a, , c] = instances as [GatewayInstance, GatewayInstance, GatewayInstance];
    const ids = [...(await idsOnEveryShard("crash", 1)).values()].flat();
    await Promise.all(ids.map((id) => startRun(c, id, promptOf(id, 2_000))));
    const reader = await openSse(`${a.url}/api/v1/stream?sessions=${ids.join(",")}`);
    open.push(reader);
    await reader.waitFor(
      (events) => ids.every((id) => events.some((event) => event.event === `${id}:token`)),
      30_000,
    );
    c.kill("SIGKILL");
    await c.exited;
    // LEASE_MS is 2 s in e2e: the sweeper on a or b ends them once the leases lapse.
    await reader.waitFor(
      (events) => ids.every((id) => events.some((event) => event.event === `${id}:error`)),
      60_000,
    );
    const stored = await readStoredSessions(a.url, ids);
    expect(storyProblems(stored), context()).toEqual([]);
    for (const session of stored.values()) {
      expect(terminalOf(session)).toMatchObject({ type: "error", data: { code: "interrupted" } });
    }
    reader.close();
    await ensureRunning(instances);
  });

  it("with 300 clients, every node counts the connections it counted with 1 (CLIENT LIST)", async () => {
    suite.assertReady();
    const [a, b] = instances as [GatewayInstance, GatewayInstance];
    // Sessions created by a producer's append stay running with no run: their readers stay open.
    const ids = [...(await idsOnEveryShard("conns", 2)).values()].flat();
    for (const id of ids) {
      const res = await postJson(`${a.url}/api/v1/sessions/${id}/events`, {
        events: [{ type: "token", data: { content: "x" } }],
      });
      expect(res.status, res.text).toBe(202);
    }
    const url = (instance: GatewayInstance, offset: number) =>
      `${instance.url}/api/v1/stream?sessions=${[0, 1, 2].map((k) => ids[(offset + k * 2) % ids.length]).join(",")}`;
    const one = await openSse(url(a, 0));
    open.push(one);
    await one.waitFor((events) => events.filter((event) => event.event.endsWith(":token")).length === 3);
    const withOne = await gatewayConnections(cluster!);

    const many: SseConnection[] = [];
    for (let i = 0; i < 300; i++) {
      const connection = await openSse(url(i % 2 === 0 ? a : b, i));
      many.push(connection);
      open.push(connection);
    }
    await Promise.all(
      many.map((connection) =>
        connection.waitFor(
          (events) => events.filter((event) => event.event.endsWith(":token")).length === 3,
          60_000,
        ),
      ),
    );
    const withMany = await gatewayConnections(cluster!);
    console.log(
      `gateway connections per node, 1 client: ${JSON.stringify(withOne)}; 300 clients: ${JSON.stringify(withMany)}`,
    );
    // On each primary, two per instance (command, subscriber), with 1 client as with 300. A replica
    // sees at most one per instance: the Cluster client asks a random node for the slot map.
    const primaries = new Set(await cluster!.primaries());
    for (const counts of [withOne, withMany]) {
      for (const [address, count] of Object.entries(counts)) {
        if (primaries.has(address)) expect(count, address).toBe("command=3 subscriber=3");
        else expect(count, address).toMatch(/^command=[0-3] subscriber=0$/);
      }
    }
    for (const connection of [one, ...many]) connection.close();
    // Each instance's /readyz lists every shard's two connections.
    const ready = await getJson(`${a.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(Object.keys(ready.body.connections as object).sort()).toEqual(
      [
        "cluster",
        ...[...primaries].flatMap((address) => [`command ${address}`, `subscriber ${address}`]),
      ].sort(),
    );
  });

  it("a shard's primary SIGKILLed mid-stream: its replica takes over, readers end, each run has one terminal event", async () => {
    suite.assertReady();
    await failoverUnderLoad({ cluster: cluster!, instances, keys, readers, context }, 0);
  });
});

/** The replica of the primary at `primary` (a running node whose ROLE names it). */
async function replicaOf(cluster: RedisClusterHandle, primary: string): Promise<ClusterNode> {
  for (const node of cluster.nodes.filter((candidate) => candidate.running)) {
    const redis = cluster.connect(node.port);
    try {
      const role = (await redis.call("ROLE")) as unknown[];
      if (role[0] === "slave" && `${String(role[1])}:${String(role[2])}` === primary) return node;
    } finally {
      redis.disconnect();
    }
  }
  throw new Error(`no replica of ${primary}`);
}

describe("e2e: gateway processes on a 3-shard Redis Cluster with REDIS_WAIT_REPLICAS=1", () => {
  let cluster: RedisClusterHandle | undefined;
  let instances: GatewayInstance[] = [];
  const keyPrefix = randomPrefix();
  const keys = createKeyScheme(keyPrefix);
  const open: SseConnection[] = [];
  const readers: ResilientMuxClient[] = [];

  const suite = setupSuite(async () => {
    cluster = await startRedisCluster();
    const { REDIS_URL: _unused, ...env } = e2eGatewayEnv("", keyPrefix);
    instances = await createInstances(["d", "e", "f"], {
      ...env,
      REDIS_CLUSTER_NODES: cluster.seeds,
      REDIS_WAIT_REPLICAS: "1",
    });
    await ensureRunning(instances);
  }, 180_000);

  afterAll(async () => {
    for (const connection of open) connection.close();
    for (const reader of readers) reader.close();
    await Promise.all(instances.map((instance) => instance.stop()));
    await cluster?.stop();
  }, 60_000);

  const context = () => logTails(instances);

  it("an append is answered once its shard's replica holds it; with that replica stopped, 503 and unseen until it is back", async () => {
    suite.assertReady();
    const [d, e] = instances as [GatewayInstance, GatewayInstance];
    // Three connections per primary: command, subscriber, and the appender (appends and their WAITs).
    const ready = await getJson(`${d.url}/readyz`);
    expect(ready.status).toBe(200);
    const primaries = await cluster!.primaries();
    expect(Object.keys(ready.body.connections as object).sort()).toEqual(
      [
        "cluster",
        ...primaries.flatMap((address) => [
          `command ${address}`,
          `subscriber ${address}`,
          `appender ${address}`,
        ]),
      ].sort(),
    );

    const id = `durable-${Date.now().toString(36)}`;
    const append = (content: string, key?: string) =>
      postJson(
        `${d.url}/api/v1/sessions/${id}/events`,
        { events: [{ type: "token", data: { content } }] },
        key ? { "idempotency-key": key } : {},
      );
    const replica = await replicaOf(cluster!, await cluster!.primaryOf(keys.events(id)));
    const first = await append("before");
    expect(first.status, first.text).toBe(202);
    // Acknowledged means the shard's replica holds it.
    const onReplica = cluster!.connect(replica.port);
    try {
      // A cluster replica answers reads of its primary's slots only after READONLY.
      await onReplica.call("READONLY");
      expect(await onReplica.xlen(keys.events(id))).toBe(1);
    } finally {
      onReplica.disconnect();
    }
    const live = await openSse(`${e.url}/api/v1/sessions/${id}/stream`);
    open.push(live);
    await live.waitFor((events) => events.some((event) => event.data.includes('"before"')));

    process.kill(replica.pid, "SIGSTOP");
    let refused: Awaited<ReturnType<typeof append>>;
    try {
      refused = await append("held", "order-1");
      // Kept on the primary, not shown: a new reader stops at what the replica confirmed, and no
      // notice went out to the live one.
      const fresh = await openSse(`${e.url}/api/v1/sessions/${id}/stream`);
      open.push(fresh);
      await fresh.waitFor((events) => events.some((event) => event.data.includes('"before"')));
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (const stream of [live, fresh]) {
        expect(stream.events.some((event) => event.data.includes('"held"'))).toBe(false);
      }
    } finally {
      process.kill(replica.pid, "SIGCONT");
    }
    expect(refused.status, refused.text).toBe(503);
    expect(refused.body.error.message).toContain("REDIS_WAIT_REPLICAS");
    // The replica is back: the kept batch is announced without a retry, and read once.
    await live.waitFor((events) => events.some((event) => event.data.includes('"held"')), 30_000);
    let retry = await append("held", "order-1");
    for (let attempt = 0; retry.status === 503 && attempt < 50; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      retry = await append("held", "order-1");
    }
    expect(retry.status, retry.text).toBe(202);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    const contents = live.events
      .filter((event) => event.event === "token")
      .map((event) => (JSON.parse(event.data) as { content: string }).content);
    expect(contents, context()).toEqual(["before", "held"]);
    // The next test needs every replica in sync (a failover needs one).
    await cluster!.waitHealthy();
  });

  it("a shard's primary SIGKILLed mid-stream: nothing acknowledged is lost; every reader ends with the upstream's text", async () => {
    suite.assertReady();
    await failoverUnderLoad({ cluster: cluster!, instances, keys, readers, context }, 1);
  });
});

interface ClusterStack {
  cluster: RedisClusterHandle;
  instances: GatewayInstance[];
  keys: KeyScheme;
  readers: ResilientMuxClient[];
  context(): string;
}

/**
 * 100 runs on 3 instances, 12 readers plus one arriving mid-failover; the primary owning the most of
 * the sessions is SIGKILLed mid-stream. Always: every reader ends, every run has one terminal event
 * (done). Without WAIT (`waitReplicas` 0) what was lost is reported in the output; with it, a loss
 * fails the test.
 */
async function failoverUnderLoad(stack: ClusterStack, waitReplicas: number): Promise<void> {
  const perShard = waitReplicas > 0 ? 3 : 2;
  const { cluster, instances, keys, readers, context } = stack;
  const [a, b, c] = instances as [GatewayInstance, GatewayInstance, GatewayInstance];
  const tokens = 240; // 6 s at the e2e pace (40 tokens/s): the failover happens mid-stream
  const tag = waitReplicas > 0 ? "failover-wait" : "failover";
  const runs = await startRuns([a, b, c], 100, tokens, tag);
  const ids = runs.map((run) => run.id);
  const clients = [
    ...makeClients(a.url, ids, 4, 26, 32, `${tag}-a`),
    ...makeClients(b.url, ids, 4, 26, 32, `${tag}-b`),
    ...makeClients(c.url, ids, 4, 26, 32, `${tag}-c`),
  ];
  readers.push(...clients);
  expect(coverage(clients, ids)).toEqual([]);
  const running = startReading(clients, CLIENT_TIMEOUT_MS);
  await waitUntil(
    () =>
      ids.every((id) =>
        clients.some((client) => client.sessions.includes(id) && client.eventsOf(id).length >= 10),
      ),
    60_000,
    () => `not every run is streaming:\n${context()}`,
  );
  // The primary that owns the most of these sessions.
  const owners = new Map<string, string[]>();
  for (const id of ids) {
    const owner = await cluster.primaryOf(keys.events(id));
    owners.set(owner, [...(owners.get(owner) ?? []), id]);
  }
  const [victim, victimIds] = [...owners.entries()].sort((x, y) => y[1].length - x[1].length)[0]!;
  const victimPort = Number(victim.slice(victim.lastIndexOf(":") + 1));
  await cluster.kill(victimPort);
  const killedAt = Date.now();
  // A reader that arrives while the shard is down: its subscriptions wait for the new primary.
  const late = makeClients(b.url, victimIds, 1, victimIds.length, victimIds.length, `${tag}-late`);
  clients.push(...late);
  readers.push(...late);
  running.push(...startReading(late, CLIENT_TIMEOUT_MS));
  // Meanwhile /readyz names the shard that is down, and stays 200: the other shards serve on.
  const readyzSeen = new Set<string>();
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const ready = await getJson(`${a.url}/readyz`).catch(() => undefined);
      if (ready) {
        const connections = (ready.body.connections ?? {}) as Record<string, string>;
        readyzSeen.add(`${ready.status} subscriber=${connections[`subscriber ${victim}`] ?? "-"}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  await waitUntil(
    async () => !(await cluster.primaries()).includes(victim),
    60_000,
    () => `no replica took over from ${victim}`,
  );
  const failoverMs = Date.now() - killedAt;
  // With WAIT 1 the new primary's appends need a replica: the killed node comes back as one (until it
  // has synced, they are answered unconfirmed and retried; what was shown meanwhile must all survive).
  if (waitReplicas > 0) await cluster.start(victimPort);
  // Every shard whole again, on the new primary: the dead one is no longer listed.
  await waitUntil(
    async () => {
      const ready = await getJson(`${a.url}/readyz`);
      const connections = Object.entries((ready.body.connections ?? {}) as Record<string, string>);
      return (
        ready.status === 200 &&
        connections.length === 1 + 3 * perShard &&
        connections.every(([name, status]) => status === "ready" && !name.endsWith(` ${victim}`))
      );
    },
    30_000,
    () => `a has not every shard back\n${context()}`,
  );
  polling = false;
  await poll;
  expect(
    [...readyzSeen].some((seen) => /^200 subscriber=(reconnecting|connecting|close|end)$/.test(seen)),
    [...readyzSeen].join(", "),
  ).toBe(true);
  const metrics = (await getJson(`${a.url}/metrics`)).text;
  const count = (event: string) =>
    Number(new RegExp(`sse_redis_cluster_events_total\\{event="${event}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
  expect(count("slots_moved"), metrics).toBeGreaterThanOrEqual(1);
  expect(count("channels_moved"), metrics).toBeGreaterThanOrEqual(1);

  await finishAll(clients, running).catch((error: Error) => {
    throw new Error(`${error.message}\n${context()}`);
  });
  // The promoted replica had no scripts cached (they are not replicated): the first EVALSHA there met
  // NOSCRIPT and ioredis loaded it on that node.
  const promoted = await cluster.primaryOf(keys.events(victimIds[0]!));
  const promotedNode = cluster.connect(Number(promoted.slice(promoted.lastIndexOf(":") + 1)));
  try {
    const appendSha = createHash("sha1")
      .update(readFileSync(new URL("../../src/store/lua/append-8.lua", import.meta.url)))
      .digest("hex");
    expect(await promotedNode.script("EXISTS", appendSha)).toEqual([1]);
  } finally {
    promotedNode.disconnect();
  }
  const stored = await readStoredSessions(a.url, ids);
  // Invariants, with or without durable acknowledgements: one terminal event per run, nothing after it.
  expect(storyProblems(stored), context()).toEqual([]);

  // What was lost (or changed) for readers and against the upstream's text: reported, not failed.
  const losses: string[] = [];
  const plain = (events: ReadonlyArray<{ type: string; data: unknown }>) =>
    JSON.stringify(events.map((event) => [event.type, event.data]));
  for (const client of clients) {
    for (const id of client.sessions) {
      const got = client.eventsOf(id);
      const want = stored.get(id)!.events;
      if (plain(got) !== plain(want)) {
        losses.push(
          `${client.name}/${id}: received ${got.length} events (${textOf(got).length} chars), stored ${want.length} (${textOf(want).length} chars)`,
        );
      }
    }
  }
  const terminals: Record<string, number> = {};
  for (const session of stored.values()) {
    const terminal = terminalOf(session)!;
    const label =
      terminal.type === "error" ? `error:${(terminal.data as { code?: string }).code}` : terminal.type;
    terminals[label] = (terminals[label] ?? 0) + 1;
  }
  // startRuns prompts every run alike: `e2e <tag> [tokens=N]`.
  const expected = await upstreamText(promptOf(tag, tokens));
  for (const [id, session] of stored) {
    if (terminalOf(session)?.type === "done" && textOf(session.events) !== expected) {
      losses.push(
        `${id}: stored text differs from the upstream's (${textOf(session.events).length} vs ${expected.length} chars)`,
      );
    }
  }
  const reconnects = clients.reduce((sum, client) => sum + client.reconnects, 0);
  console.log(
    [
      `failover of ${victim} (owning ${victimIds.length} of ${ids.length} sessions): a replica took over ${failoverMs} ms after SIGKILL; /readyz of a: ${[...readyzSeen].join(", ")}`,
      `terminal events: ${JSON.stringify(terminals)}; reader reconnects: ${reconnects}`,
      losses.length === 0
        ? "nothing lost: every reader has the stored events, and every done run the upstream's exact text"
        : `lost with REDIS_WAIT_REPLICAS=${waitReplicas}:\n  ${losses.join("\n  ")}`,
    ].join("\n"),
  );
  // With durable acknowledgements nothing any reader saw or any producer was told was stored is lost:
  // every reader has exactly the stored events, and every run the upstream's exact text.
  if (waitReplicas > 0) {
    expect(losses, context()).toEqual([]);
    for (const client of clients) {
      for (const id of client.sessions)
        expect(textOf(client.eventsOf(id)), `${client.name}/${id}`).toBe(expected);
    }
    const waits: string[] = [];
    for (const instance of instances) {
      const metricsText = (await getJson(`${instance.url}/metrics`)).text;
      expect(metricsText).toMatch(/sse_redis_wait_seconds_count\{outcome="confirmed"\} [1-9]/);
      const countOf = (outcome: string) =>
        new RegExp(`sse_redis_wait_seconds_count\\{outcome="${outcome}"\\} (\\d+)`).exec(metricsText)?.[1] ??
        "0";
      waits.push(`${instance.name}: ${countOf("confirmed")} confirmed, ${countOf("short")} short`);
    }
    // WAITs answered with too few replicas: their appends were answered unconfirmed and sent again.
    console.log(`WAITs per instance: ${waits.join("; ")}`);
  }
  // Every run ended once, with done: the runs on the failed shard held their tokens meanwhile, and
  // the sweeper left their leases alone until the shard had been back a lease period.
  expect(terminals, context()).toEqual({ done: ids.length });
}
