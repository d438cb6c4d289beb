/**
 * A real Redis Cluster on loopback: 6 `redis-server --cluster-enabled yes` processes on free ports
 * (3 primaries with a replica each), joined by `redis-cli --cluster create`, ready once every node
 * says `cluster_state:ok` and every replica is in sync. Nodes can be killed (SIGKILL: a shard's
 * failover) and started again on the same ports.
 *
 * `cluster-node-timeout` is short (1 s) so a failover plays out in seconds, and
 * `cluster-require-full-coverage no` keeps the other shards serving while one fails over (what
 * docs/scaling.md recommends).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort } from "./ports.js";
import { killOnExit, pingRedis } from "./redis-server.js";

const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";
const REDIS_CLI = process.env.REDIS_CLI_BIN ?? "redis-cli";
const HOST = "127.0.0.1";
const NODE_COUNT = 6;
const NODE_TIMEOUT_MS = 1_000;
const READY_TIMEOUT_MS = 60_000;
const POLL_MS = 100;
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_CHARS = 3_000;

const run = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface ClusterNode {
  readonly port: number;
  /** `127.0.0.1:<port>`, as ioredis names the node. */
  readonly address: string;
  readonly pid: number;
  readonly running: boolean;
  logs(): string;
}

export interface RedisClusterHandle {
  readonly nodes: readonly ClusterNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,...`: the value of REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** A plain connection to one node (the caller closes it). */
  connect(port: number): Redis;
  /** The address of the primary serving `key`'s slot now, as the running nodes see it. */
  primaryOf(key: string): Promise<string>;
  /** The addresses of the primaries now (running ones), in slot order. */
  primaries(): Promise<string[]>;
  /** SIGKILL: the process dies at once, as in a crash. */
  kill(port: number): Promise<void>;
  /** Starts a killed node again on the same ports with its nodes.conf (it rejoins, as a replica if replaced). */
  start(port: number): Promise<void>;
  /** Waits until every running node reports cluster_state:ok and the same slot owners. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

interface NodeProcess {
  port: number;
  busPort: number;
  dir: string;
  child: ChildProcess | undefined;
  output: string[];
  exited: Promise<void>;
}

function spawnNode(node: NodeProcess): void {
  const child = spawn(
    REDIS_BIN,
    [
      "--port",
      String(node.port),
      "--cluster-port",
      String(node.busPort),
      "--bind",
      HOST,
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      "nodes.conf",
      "--cluster-node-timeout",
      String(NODE_TIMEOUT_MS),
      "--cluster-require-full-coverage",
      "no",
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
      "--dir",
      node.dir,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  killOnExit(child);
  node.output = [];
  const capture = (chunk: Buffer) => node.output.push(chunk.toString("utf8"));
  child.stdout?.on("data", capture);
  child.stderr?.on("data", capture);
  node.child = child;
  node.exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  child.once("exit", () => {
    if (node.child === child) node.child = undefined;
  });
}

async function waitForPing(node: NodeProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!node.child) {
      throw new Error(
        `redis-server (cluster) on ${node.port} exited:\n${node.output.join("").slice(-LOG_TAIL_CHARS)}`,
      );
    }
    if (await pingRedis(node.port)) return;
    await sleep(POLL_MS);
  }
  throw new Error(`redis-server (cluster) on ${node.port} did not answer PING`);
}

/** Distinct free ports (freePort can answer the same one twice once it is released). */
async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

async function withNode<T>(port: number, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

type ShardsReply = Array<Array<unknown>>;

/** CLUSTER SLOTS as `[start, end, primaryAddress]` rows. */
async function slotOwners(port: number): Promise<Array<[number, number, string]>> {
  return withNode(port, async (redis) => {
    const reply = (await redis.call("CLUSTER", "SLOTS")) as ShardsReply;
    return reply.map((row) => {
      const primary = row[2] as [string, number];
      return [Number(row[0]), Number(row[1]), `${primary[0]}:${primary[1]}`];
    });
  });
}

/** Starts the cluster and resolves once it is healthy. The caller stops it. */
export async function startRedisCluster(): Promise<RedisClusterHandle> {
  const ports = await distinctFreePorts(NODE_COUNT * 2);
  const processes: NodeProcess[] = [];
  for (let i = 0; i < NODE_COUNT; i++) {
    processes.push({
      port: ports[i]!,
      busPort: ports[NODE_COUNT + i]!,
      dir: mkdtempSync(join(tmpdir(), "sse-gw-redis-cluster-")),
      child: undefined,
      output: [],
      exited: Promise.resolve(),
    });
  }
  const byPort = (port: number) => {
    const node = processes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`no cluster node on port ${port}`);
    return node;
  };
  const running = () => processes.filter((node) => node.child !== undefined);

  const stopNode = async (node: NodeProcess, signal: NodeJS.Signals) => {
    const child = node.child;
    if (!child) return;
    child.kill(signal);
    const timedOut = await Promise.race([
      node.exited.then(() => false),
      sleep(STOP_GRACE_MS).then(() => true),
    ]);
    if (timedOut) {
      child.kill("SIGKILL");
      await node.exited;
    }
  };

  const handle: RedisClusterHandle = {
    nodes: processes.map((node) => ({
      port: node.port,
      address: `${HOST}:${node.port}`,
      get pid() {
        return node.child?.pid ?? -1;
      },
      get running() {
        return node.child !== undefined;
      },
      logs: () => node.output.join(""),
    })),
    seeds: processes.map((node) => `${HOST}:${node.port}`).join(","),
    connect: (port) => new Redis({ host: HOST, port }),
    async primaryOf(key) {
      const [first] = running();
      if (!first) throw new Error("no cluster node is running");
      const slot = await withNode(first.port, async (redis) =>
        Number(await redis.call("CLUSTER", "KEYSLOT", key)),
      );
      const owner = (await slotOwners(first.port)).find(([start, end]) => slot >= start && slot <= end);
      if (!owner) throw new Error(`no primary serves slot ${slot}`);
      return owner[2];
    },
    async primaries() {
      const [first] = running();
      if (!first) throw new Error("no cluster node is running");
      return (await slotOwners(first.port)).map((row) => row[2]);
    },
    async kill(port) {
      await stopNode(byPort(port), "SIGKILL");
    },
    async start(port) {
      const node = byPort(port);
      if (node.child) return;
      spawnNode(node);
      await waitForPing(node);
    },
    async waitHealthy(timeoutMs = READY_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      let last = "";
      while (Date.now() < deadline) {
        try {
          last = await healthProblem(running().map((node) => node.port));
          if (last === "") return;
        } catch (error) {
          last = String(error);
        }
        await sleep(POLL_MS);
      }
      throw new Error(`the Redis Cluster did not become healthy: ${last}`);
    },
    async stop() {
      await Promise.all(processes.map((node) => stopNode(node, "SIGTERM")));
      for (const node of processes) rmSync(node.dir, { recursive: true, force: true });
    },
  };

  try {
    for (const node of processes) spawnNode(node);
    await Promise.all(processes.map(waitForPing));
    await run(REDIS_CLI, [
      "--cluster",
      "create",
      ...processes.map((node) => `${HOST}:${node.port}`),
      "--cluster-replicas",
      "1",
      "--cluster-yes",
    ]);
    await handle.waitHealthy();
  } catch (error) {
    await handle.stop();
    throw error;
  }
  return handle;
}

/**
 * "" when every node says cluster_state:ok, all agree on the 3 slot owners, every primary has a replica
 * in sync; otherwise what is not yet so.
 */
async function healthProblem(ports: readonly number[]): Promise<string> {
  const views: string[] = [];
  for (const port of ports) {
    const info = await withNode(port, (redis) => redis.call("CLUSTER", "INFO") as Promise<string>);
    if (!info.includes("cluster_state:ok")) return `${port}: not cluster_state:ok`;
    const owners = await slotOwners(port);
    const covered = owners.reduce((sum, [start, end]) => sum + end - start + 1, 0);
    if (covered !== 16_384) return `${port}: ${covered} slots served`;
    views.push(JSON.stringify(owners.sort((a, b) => a[0] - b[0])));
  }
  if (new Set(views).size !== 1) return "the nodes disagree on the slot owners";
  // Every replica that runs is in sync with its primary (a failover needs one).
  for (const port of ports) {
    const replication = await withNode(port, (redis) => redis.info("replication"));
    if (replication.includes("role:slave") && !replication.includes("master_link_status:up")) {
      return `${port}: replica not in sync`;
    }
  }
  return "";
}
