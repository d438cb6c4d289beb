/**
 * Fan-out on three Redis topologies, alternated in one run: one Redis (`REDIS_URL`), a 3-shard Redis
 * Cluster with a replica per primary (`REDIS_CLUSTER_NODES`), and a primary with one replica behind
 * 3 Sentinels with durable acknowledgements (`REDIS_SENTINELS`, `REDIS_WAIT_REPLICAS=1`). Each gets one
 * gateway process (`node dist/server.js`) and the same fixed-rate steps (not a ceiling hunt: the
 * point is what each event costs where), in rounds whose order rotates.
 *
 * Every Redis process is sampled (`INFO cpu`: used_cpu_user + used_cpu_sys) just before and just after
 * each step, which spans its warm-up, measured window and drain; its CPU is divided by the appends
 * made on its shard in that span and by the events delivered from them. Both are exact: the producer
 * counts each session's appends, each session lives on one shard (CLUSTER KEYSLOT), and every
 * subscriber of a session must get every event (checked: nothing lost, duplicated or reordered).
 */
import { setTimeout as delay } from "node:timers/promises";
import { Redis } from "ioredis";
import { startRedisCluster } from "../../test/helpers/redis-cluster.js";
import { startSentinelSet } from "../../test/helpers/redis-sentinel.js";
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { freePort, httpOk, spawnProc, waitUntil } from "../lib/procs.js";
import { appendApiPublisher, REPO_ROOT } from "../targets/gateway.js";
import { startRedisServer } from "../targets/redis.js";
import type { Target } from "../targets/types.js";
import { describeStep, openStreams, runStep, type StepResult, type StreamShape } from "./streams.js";

const HOST = "127.0.0.1";
const UNLIMITED = String(100_000_000);
const READY_TIMEOUT_MS = 30_000;
const SLOTS = 16_384;
const IDLE_SAMPLE_MS = 3_000;
/** Subscriber connections per primary standing in for more gateway instances, in one more step. */
const EXTRA_INSTANCES = 8;

export type TopologyName = "one-redis" | "cluster-3" | "sentinel-wait-1";

interface RedisNode {
  /** `primary`, `shard 2`, `shard 2 replica`, `sentinel 1`, … */
  label: string;
  role: "primary" | "replica" | "sentinel";
  /** The shard a primary or replica serves (its primary's label); sentinels: none. */
  shard: string | null;
  port: number;
}

interface Deployment {
  env: Record<string, string>;
  /** How the gateway subscribes to a session's notices there: sharded pub/sub on a cluster. */
  sharded: boolean;
  nodes: RedisNode[];
  /** The primary's label for each session id. */
  shardOf(ids: readonly string[]): Promise<string[]>;
  stop(): Promise<void>;
}

async function withClient<T>(port: number, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  await redis.connect();
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

async function startOneRedis(): Promise<Deployment> {
  const redis = await startRedisServer();
  return {
    env: { REDIS_URL: redis.url },
    sharded: false,
    nodes: [{ label: "primary", role: "primary", shard: "primary", port: redis.port }],
    shardOf: async (ids) => ids.map(() => "primary"),
    stop: () => redis.stop(),
  };
}

type SlotsReply = Array<[number, number, [string, number, ...unknown[]]?]>;

async function startCluster(): Promise<Deployment> {
  const cluster = await startRedisCluster();
  try {
    const first = cluster.nodes[0]!.port;
    const slots = (await withClient(first, (r) => r.call("CLUSTER", "SLOTS"))) as SlotsReply;
    slots.sort((a, b) => a[0] - b[0]);
    const ranges = slots.map(([start, end, primary], i) => ({
      start,
      end,
      label: `shard ${i + 1}`,
      primary: primary?.[1] ?? 0,
    }));
    // A replica names its primary in INFO replication (CLUSTER SLOTS may list it only once it is known to all).
    const replicas: RedisNode[] = [];
    for (const node of cluster.nodes) {
      const replication = await withClient(node.port, (r) => r.info("replication"));
      const primaryPort = Number(field(replication, "master_port"));
      const range = ranges.find((candidate) => candidate.primary === primaryPort);
      if (field(replication, "role") === "slave" && range) {
        replicas.push({
          label: `${range.label} replica`,
          role: "replica",
          shard: range.label,
          port: node.port,
        });
      }
    }
    const nodes: RedisNode[] = [
      ...ranges.map((range) => ({
        label: range.label,
        role: "primary" as const,
        shard: range.label,
        port: range.primary,
      })),
      ...replicas.sort((a, b) => a.label.localeCompare(b.label)),
    ];
    return {
      env: { REDIS_CLUSTER_NODES: cluster.seeds },
      sharded: true,
      nodes,
      shardOf: (ids) =>
        withClient(first, async (redis) => {
          const labels: string[] = [];
          for (const id of ids) {
            // Every key of a session carries its id as hash tag: the slot of `{id}` is theirs.
            const slot = Number(await redis.call("CLUSTER", "KEYSLOT", `{${id}}`)) % SLOTS;
            labels.push(ranges.find((range) => slot >= range.start && slot <= range.end)?.label ?? "?");
          }
          return labels;
        }),
      stop: () => cluster.stop(),
    };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

async function startSentinelWait(): Promise<Deployment> {
  const set = await startSentinelSet({ replicas: 1, sentinels: 3 });
  try {
    await set.waitForReplicas(1);
    const primaryPort = await set.primaryPort();
    const nodes: RedisNode[] = [
      { label: "primary", role: "primary", shard: "primary", port: primaryPort },
      ...set.nodes
        .filter((node) => node.port !== primaryPort)
        .map((node) => ({ label: "replica", role: "replica" as const, shard: "primary", port: node.port })),
      ...set.sentinels.map((s, i) => ({
        label: `sentinel ${i + 1}`,
        role: "sentinel" as const,
        shard: null,
        port: s.port,
      })),
    ];
    return {
      env: {
        REDIS_SENTINELS: set.sentinelsEnv,
        REDIS_SENTINEL_NAME: set.name,
        REDIS_WAIT_REPLICAS: "1",
      },
      sharded: false,
      nodes,
      shardOf: async (ids) => ids.map(() => "primary"),
      stop: () => set.stop(),
    };
  } catch (error) {
    await set.stop();
    throw error;
  }
}

const TOPOLOGIES: ReadonlyArray<{ name: TopologyName; start: () => Promise<Deployment> }> = [
  { name: "one-redis", start: startOneRedis },
  { name: "cluster-3", start: startCluster },
  { name: "sentinel-wait-1", start: startSentinelWait },
];

interface NodeSample {
  cpuSeconds: number;
  commands: number;
  waits: number;
}

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
}

async function sampleNode(redis: Redis): Promise<NodeSample> {
  const cpu = await redis.info("cpu");
  const stats = await redis.info("stats");
  // Sentinels answer INFO commandstats too; WAIT is only ever sent to a primary.
  const commandstats = await redis.info("commandstats").catch(() => "");
  return {
    cpuSeconds: Number(field(cpu, "used_cpu_sys") ?? 0) + Number(field(cpu, "used_cpu_user") ?? 0),
    commands: Number(field(stats, "total_commands_processed") ?? 0),
    waits: Number(/cmdstat_wait:calls=(\d+)/.exec(commandstats)?.[1] ?? 0),
  };
}

/** The gateway as `bench/targets/gateway.ts` starts it, on a Redis deployment of this scenario's. */
async function startGatewayOn(env: Record<string, string>, entry: string): Promise<Target> {
  const port = await freePort();
  const proc = spawnProc("gateway", process.execPath, [entry], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      ...env,
      REDIS_KEY_PREFIX: "bench:",
      PORT: String(port),
      HOST,
      LOG_LEVEL: "warn",
      DRAIN_MS: "200",
      RUN_DRAIN_TIMEOUT_MS: "1000",
      MAX_SESSIONS_PER_CONNECTION: "256",
      // One IP and one anonymous subject for every client: the abuse limits would measure nothing here.
      LIMIT_CONNECTIONS_PER_IP: UNLIMITED,
      LIMIT_CONNECTIONS_PER_SUBJECT: UNLIMITED,
      LIMIT_PUBLISH_EVENTS_PER_SECOND: UNLIMITED,
      LIMIT_RUNS_PER_MINUTE: UNLIMITED,
      LIMIT_CONCURRENT_RUNS: UNLIMITED,
      LIMIT_NEW_SESSIONS_PER_MINUTE: UNLIMITED,
      LIMIT_REQUESTS_IN_FLIGHT_PER_IP: UNLIMITED,
    },
  });
  try {
    await waitUntil("gateway /readyz", () => httpOk(`http://${HOST}:${port}/readyz`), READY_TIMEOUT_MS, proc);
  } catch (error) {
    await proc.stop();
    throw error;
  }
  const publisher = appendApiPublisher(port);
  return {
    name: "gateway",
    host: HOST,
    port,
    maxSessionsPerConnection: 256,
    streamPath: (sessions) => `/api/v1/stream?sessions=${sessions.join(",")}`,
    pids: () => [proc.pid],
    collectGarbage: () => false,
    redis: null,
    publisher,
    async stop() {
      publisher.close();
      await proc.stop(10_000);
    },
  };
}

/**
 * What `count` more gateway instances cost Redis, without their CPU on this machine: each is one
 * subscriber connection per primary, subscribed to every session's notice channel (`SSUBSCRIBE` on the
 * shard that owns it, on a cluster), as an instance whose clients read every session is. Notices are
 * counted, so a channel name that missed would show.
 */
async function extraInstances(
  deployment: Deployment,
  ids: readonly string[],
  shardOf: readonly string[],
  count: number,
) {
  const primaries = deployment.nodes.filter((node) => node.role === "primary");
  const connections: Redis[] = [];
  let notices = 0;
  for (let k = 0; k < count; k++) {
    for (const primary of primaries) {
      const redis = new Redis({ host: HOST, port: primary.port, maxRetriesPerRequest: 1 });
      redis.on("error", () => {});
      redis.on("message", () => notices++);
      redis.on("smessage", () => notices++);
      connections.push(redis);
      const channels = ids.filter((_, i) => shardOf[i] === primary.shard).map((id) => `bench:n:{${id}}`);
      // One SSUBSCRIBE per channel: a sharded subscribe's channels must share a slot.
      if (deployment.sharded) for (const channel of channels) await redis.ssubscribe(channel);
      else if (channels.length > 0) await redis.subscribe(...channels);
    }
  }
  return {
    takeNotices() {
      const taken = notices;
      notices = 0;
      return taken;
    },
    close() {
      for (const redis of connections) redis.disconnect();
    },
  };
}

const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

export interface NodeCost {
  label: string;
  role: RedisNode["role"];
  shard: string | null;
  cpuPercent: number;
  /** CPU over the step per append made on this node's shard (sentinels: per append of the whole deployment). */
  cpuMicrosPerAppend: number | null;
  /** … per event delivered from this node's shard's sessions. */
  cpuMicrosPerDelivered: number | null;
  commandsPerAppend: number | null;
  waitsPerAppend: number | null;
  appends: number;
  delivered: number;
}

export interface TopologyStep {
  topology: TopologyName;
  round: number;
  rate: number;
  /** Subscriber connections standing in for more gateway instances (extraInstances), and the notices they got. */
  extraInstances: number;
  extraNotices: number;
  step: StepResult;
  /** Gateway CPU per delivered event in the measured window (µs). */
  gatewayMicrosPerDelivered: number | null;
  /** Sessions per shard. */
  sessionsPerShard: Record<string, number>;
  spanSeconds: number;
  nodes: Array<NodeCost & { idleCpuPercent: number; cpuMicrosPerAppendAboveIdle: number | null }>;
}

function costs(
  nodes: readonly RedisNode[],
  before: readonly NodeSample[],
  after: readonly NodeSample[],
  seconds: number,
  appendsByShard: Map<string, number>,
  deliveredByShard: Map<string, number>,
): NodeCost[] {
  let allAppends = 0;
  let allDelivered = 0;
  for (const count of appendsByShard.values()) allAppends += count;
  for (const count of deliveredByShard.values()) allDelivered += count;
  return nodes.map((node, i) => {
    const cpu = after[i]!.cpuSeconds - before[i]!.cpuSeconds;
    const commands = after[i]!.commands - before[i]!.commands;
    const waits = after[i]!.waits - before[i]!.waits;
    const appends = node.shard === null ? allAppends : (appendsByShard.get(node.shard) ?? 0);
    const delivered = node.shard === null ? allDelivered : (deliveredByShard.get(node.shard) ?? 0);
    return {
      label: node.label,
      role: node.role,
      shard: node.shard,
      cpuPercent: round((cpu / seconds) * 100),
      cpuMicrosPerAppend: appends > 0 ? round((cpu * 1e6) / appends, 2) : null,
      cpuMicrosPerDelivered: delivered > 0 ? round((cpu * 1e6) / delivered, 3) : null,
      commandsPerAppend: appends > 0 ? round(commands / appends, 2) : null,
      waitsPerAppend: appends > 0 ? round(waits / appends, 3) : null,
      appends,
      delivered,
    };
  });
}

async function runTopology(
  context: ScenarioContext,
  topology: (typeof TOPOLOGIES)[number],
  roundIndex: number,
  shape: StreamShape,
  rates: readonly number[],
  extra: number,
  timing: { warmupMs: number; measureMs: number; drainTimeoutMs: number; strict?: boolean },
): Promise<TopologyStep[]> {
  const deployment = await topology.start();
  const probes = deployment.nodes.map((node) => {
    const redis = new Redis({ host: HOST, port: node.port, maxRetriesPerRequest: 1 });
    redis.on("error", () => {});
    return redis;
  });
  context.log(`  redis: ${deployment.nodes.map((node) => `${node.label} :${node.port}`).join(", ")}`);
  let target: Target | null = null;
  const out: TopologyStep[] = [];
  try {
    target = await startGatewayOn(deployment.env, context.targetOptions.gatewayEntry ?? "dist/server.js");
    const sessionTag = tag("t");
    const streams = await openStreams(target, context.loadgen, shape, sessionTag);
    const ids = Array.from({ length: shape.sessions }, (_, i) => `${sessionTag}-${i}`);
    const shardOf = await deployment.shardOf(ids);
    const sessionsPerShard: Record<string, number> = {};
    for (const shard of shardOf) sessionsPerShard[shard] = (sessionsPerShard[shard] ?? 0) + 1;
    // Redis's own background work (cron, the cluster bus, replication pings), with every stream open.
    const idleA = await Promise.all(probes.map(sampleNode));
    const idleStarted = performance.now();
    await delay(IDLE_SAMPLE_MS);
    const idleB = await Promise.all(probes.map(sampleNode));
    const idleSeconds = (performance.now() - idleStarted) / 1000;
    const idlePercent = deployment.nodes.map((_, i) =>
      round(((idleB[i]!.cpuSeconds - idleA[i]!.cpuSeconds) / idleSeconds) * 100, 2),
    );
    const plan = [
      ...rates.map((rate) => ({ rate, extra: 0 })),
      ...(extra > 0 ? [{ rate: rates.at(-1)!, extra }] : []),
    ];
    for (const { rate, extra: extraCount } of plan) {
      const extras = extraCount > 0 ? await extraInstances(deployment, ids, shardOf, extraCount) : null;
      const startSeq = Int32Array.from(streams.producer.seq);
      const before = await Promise.all(probes.map(sampleNode));
      extras?.takeNotices();
      const startedMs = performance.now();
      const step = await runStep(streams, context.loadgen, rate, timing);
      const after = await Promise.all(probes.map(sampleNode));
      const spanSeconds = (performance.now() - startedMs) / 1000;
      // The stand-ins read in this process, behind the load generator's work: let their last notices in.
      if (extras) await delay(500);
      const extraNotices = extras?.takeNotices() ?? 0;
      extras?.close();
      const appendsByShard = new Map<string, number>();
      const deliveredByShard = new Map<string, number>();
      let appendsTotal = 0;
      for (let i = 0; i < ids.length; i++) {
        const appended = streams.producer.seq[i]! - startSeq[i]!;
        const shard = shardOf[i]!;
        appendsTotal += appended;
        appendsByShard.set(shard, (appendsByShard.get(shard) ?? 0) + appended);
        deliveredByShard.set(shard, (deliveredByShard.get(shard) ?? 0) + appended * streams.subscribers[i]!);
      }
      const nodes = costs(deployment.nodes, before, after, spanSeconds, appendsByShard, deliveredByShard).map(
        (cost, i) => ({
          ...cost,
          idleCpuPercent: idlePercent[i]!,
          // Above the node's idle rate: the part that grows with the load.
          cpuMicrosPerAppendAboveIdle:
            cost.appends > 0
              ? round(
                  ((after[i]!.cpuSeconds - before[i]!.cpuSeconds - (idlePercent[i]! / 100) * spanSeconds) *
                    1e6) /
                    cost.appends,
                  2,
                )
              : null,
        }),
      );
      const gatewayMicros =
        step.delivered > 0 ? round(((step.server.cpuPercent / 100) * 1e6) / step.delivered, 2) : null;
      const label = `${topology.name}${extraCount > 0 ? ` +${extraCount} instances` : ""}`;
      context.log(describeStep(label, step));
      context.log(
        `  gateway ${gatewayMicros} µs/event; ` +
          nodes
            .map(
              (n) =>
                `${n.label} ${n.cpuPercent}% (idle ${n.idleCpuPercent}%) ${n.cpuMicrosPerAppend} µs/append (${n.cpuMicrosPerAppendAboveIdle} above idle) ${n.cpuMicrosPerDelivered} µs/event`,
            )
            .join("; ") +
          (extraCount > 0
            ? `; extra subscribers got ${extraNotices} notices for ${appendsTotal} appends`
            : ""),
      );
      for (const text of step.correctness) {
        context.problem(`topologies ${label} at ${rate}/s: ${text}`);
      }
      if (extraCount > 0 && extraNotices < appendsTotal * extraCount * 0.9) {
        context.problem(
          `topologies ${label}: the stand-in instances got ${extraNotices} notices for ${appendsTotal} appends × ${extraCount}`,
        );
      }
      const result: TopologyStep = {
        topology: topology.name,
        round: roundIndex,
        rate,
        extraInstances: extraCount,
        extraNotices,
        step,
        gatewayMicrosPerDelivered: gatewayMicros,
        sessionsPerShard,
        spanSeconds: round(spanSeconds, 2),
        nodes,
      };
      context.record(
        "topologies-step",
        topology.name,
        { ...shape, ...timing, rate, extraInstances: extraCount, round: roundIndex },
        { ...result },
      );
      out.push(result);
    }
  } finally {
    await context.loadgen.closeConnections().catch(() => {});
    await target?.stop();
    for (const probe of probes) probe.disconnect();
    await deployment.stop();
  }
  return out;
}

export const topologiesScenario = {
  name: "topologies",
  title: "Fan-out on one Redis, a 3-shard cluster and Sentinel with WAIT 1, alternated; Redis CPU per shard",
  async run(context: ScenarioContext) {
    const shape: StreamShape = context.quick
      ? { connections: 40, sessionsPerConnection: 5, sessions: 20, tickMs: 50, phases: 10 }
      : { connections: 200, sessionsPerConnection: 10, sessions: 100, tickMs: 50, phases: 10 };
    const rates = context.fixedRates ?? (context.quick ? [100] : [200, 500, 1_000]);
    const timing = context.quick
      ? { warmupMs: 300, measureMs: 1_000, drainTimeoutMs: 10_000, strict: true }
      : {
          warmupMs: 2_000,
          measureMs: Math.round((context.stepSeconds ?? 10) * 1000),
          drainTimeoutMs: 15_000,
        };
    const rounds = context.quick ? 1 : 3;
    const extra = context.quick ? 2 : EXTRA_INSTANCES;
    const steps: TopologyStep[] = [];
    for (let r = 0; r < rounds; r++) {
      // The order rotates, so no topology always runs first (or last) in a round.
      for (let k = 0; k < TOPOLOGIES.length; k++) {
        const topology = TOPOLOGIES[(r + k) % TOPOLOGIES.length]!;
        context.log(`round ${r + 1}/${rounds}: ${topology.name}`);
        try {
          steps.push(...(await runTopology(context, topology, r + 1, shape, rates, extra, timing)));
        } catch (error) {
          context.problem(`topologies ${topology.name} round ${r + 1}: ${(error as Error)?.stack ?? error}`);
        }
        await delay(500);
      }
    }
    context.record(
      "topologies",
      "gateway",
      {
        ...shape,
        ...timing,
        rates,
        rounds,
        subscribersPerSession: (shape.connections * shape.sessionsPerConnection) / shape.sessions,
      },
      { steps },
    );
  },
};
