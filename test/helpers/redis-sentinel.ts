/**
 * A real Sentinel set on free loopback ports: a primary, `replicas` replicas (`--replicaof`), and
 * `sentinels` Sentinels (`redis-server <conf> --sentinel`, each with its own config file in a temp
 * directory, as Sentinel rewrites it), with short detection and failover periods so a failover plays
 * out in seconds. Nothing is persisted: a node's data lives as long as its process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./ports.js";
import { killOnExit, pingRedis } from "./redis-server.js";

const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";
const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 20_000;
const POLL_MS = 50;
const LOG_TAIL_CHARS = 3_000;

export interface SentinelSetOptions {
  /** Replicas of the primary; 1 by default. A failover leaves one fewer. */
  replicas?: number;
  /** 3 by default (quorum 2). */
  sentinels?: number;
  /** The primary's name in the Sentinels' configuration; `mymaster` by default. */
  name?: string;
  /** Before a Sentinel takes a silent primary for down; 1000 ms by default. */
  downAfterMs?: number;
}

export interface SentinelNode {
  readonly port: number;
  readonly pid: number;
  isRunning(): boolean;
  /** Captured stdout+stderr. */
  logs(): string;
}

export interface SentinelSetHandle {
  readonly name: string;
  /** The Sentinels' addresses, e.g. for `REDIS_SENTINELS` (`sentinelsEnv`). */
  readonly sentinels: Array<{ host: string; port: number }>;
  /** `127.0.0.1:p1,127.0.0.1:p2,...` */
  readonly sentinelsEnv: string;
  /** Every data node (the first is the initial primary). */
  readonly nodes: readonly SentinelNode[];
  /** The primary's port as the Sentinels report it now. */
  primaryPort(): Promise<number>;
  /** The node the Sentinels name as primary now. */
  primary(): Promise<SentinelNode>;
  /** SIGKILLs the current primary; resolves with its port once it is gone. */
  killPrimary(): Promise<number>;
  /** Resolves once the Sentinels name a primary other than `oldPort` and it answers as one. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** Resolves once the current primary has `count` replicas online. */
  waitForReplicas(count: number, timeoutMs?: number): Promise<void>;
  /** Every node's and Sentinel's log tail, for a failure message. */
  logs(): string;
  stop(): Promise<void>;
}

interface Spawned extends SentinelNode {
  child: ChildProcess;
  exited: Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function spawnServer(label: string, args: string[]): Spawned {
  const child = spawn(REDIS_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  killOnExit(child);
  const output: string[] = [];
  const capture = (chunk: Buffer) => output.push(chunk.toString("utf8"));
  child.stdout?.on("data", capture);
  child.stderr?.on("data", capture);
  let running = true;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      running = false;
      resolve();
    });
    child.once("error", () => {
      running = false;
      resolve();
    });
  });
  const port = Number(args[args.indexOf("--port") + 1] ?? args[1]);
  return {
    child,
    exited,
    port,
    pid: child.pid ?? -1,
    isRunning: () => running,
    logs: () => `--- ${label} (port ${port}) ---\n${output.join("").slice(-LOG_TAIL_CHARS)}`,
  };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logs: () => string) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(POLL_MS);
  }
  throw new Error(`sentinel set: ${what} within ${timeoutMs} ms\n${logs()}`);
}

/** One command to a node or Sentinel on its own short-lived connection. */
async function ask(port: number, ...command: string[]): Promise<unknown> {
  const client = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return await client.call(command[0]!, ...command.slice(1));
  } finally {
    client.disconnect();
  }
}

export async function startSentinelSet(options: SentinelSetOptions = {}): Promise<SentinelSetHandle> {
  const name = options.name ?? "mymaster";
  const replicaCount = options.replicas ?? 1;
  const sentinelCount = options.sentinels ?? 3;
  const dir = mkdtempSync(join(tmpdir(), "sse-gw-sentinel-"));
  const nodes: Spawned[] = [];
  const replicasOnline = async (port: number) => {
    const info = String(await ask(port, "INFO", "replication"));
    return (info.match(/^slave\d+:.*state=online/gm) ?? []).length;
  };
  const sentinels: Spawned[] = [];
  const logs = () => [...nodes, ...sentinels].map((node) => node.logs()).join("\n");
  const stop = async () => {
    const all = [...sentinels, ...nodes];
    for (const node of all) if (node.isRunning()) node.child.kill("SIGKILL");
    await Promise.all(all.map((node) => node.exited));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const dataArgs = (port: number) => [
      "--port",
      String(port),
      "--bind",
      HOST,
      "--save",
      "",
      "--appendonly",
      "no",
      "--loglevel",
      "warning",
      "--dir",
      dir,
      "--dbfilename",
      `dump-${port}.rdb`,
    ];
    const primaryPort = await freePort();
    nodes.push(spawnServer("primary", dataArgs(primaryPort)));
    await waitFor("the primary did not answer PING", () => pingRedis(primaryPort), READY_TIMEOUT_MS, logs);
    for (let i = 0; i < replicaCount; i++) {
      const port = await freePort();
      nodes.push(
        spawnServer(`replica ${i + 1}`, [...dataArgs(port), "--replicaof", HOST, String(primaryPort)]),
      );
      await waitFor(`replica ${i + 1} did not answer PING`, () => pingRedis(port), READY_TIMEOUT_MS, logs);
    }
    await waitFor(
      `${replicaCount} replicas did not come online`,
      async () => (await replicasOnline(primaryPort)) >= replicaCount,
      READY_TIMEOUT_MS,
      logs,
    );

    for (let i = 0; i < sentinelCount; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          `bind ${HOST}`,
          `dir ${dir}`,
          `sentinel monitor ${name} ${HOST} ${primaryPort} ${Math.floor(sentinelCount / 2) + 1}`,
          `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1_000}`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 1`,
          "",
        ].join("\n"),
      );
      sentinels.push(spawnServer(`sentinel ${i + 1}`, [conf, "--sentinel", "--port", String(port)]));
      await waitFor(`sentinel ${i + 1} did not answer PING`, () => pingRedis(port), READY_TIMEOUT_MS, logs);
    }
    // Ready once every Sentinel knows the others and the replicas: a failover needs them.
    await waitFor(
      "the Sentinels did not discover each other and the replicas",
      async () => {
        for (const sentinel of sentinels) {
          const fields = (await ask(sentinel.port, "SENTINEL", "MASTER", name)) as string[];
          const at = (field: string) => Number(fields[fields.indexOf(field) + 1]);
          if (at("num-other-sentinels") < sentinelCount - 1 || at("num-slaves") < replicaCount) return false;
        }
        return true;
      },
      READY_TIMEOUT_MS,
      logs,
    );
  } catch (error) {
    await stop();
    throw error;
  }

  const primaryPort = async () => {
    for (const sentinel of sentinels) {
      if (!sentinel.isRunning()) continue;
      const address = (await ask(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name).catch(
        () => null,
      )) as [string, string] | null;
      if (address) return Number(address[1]);
    }
    throw new Error(`sentinel set: no Sentinel names a primary\n${logs()}`);
  };
  const nodeAt = (port: number) => {
    const node = nodes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`sentinel set: no node on port ${port}`);
    return node;
  };
  const sentinelAddresses = sentinels.map((sentinel) => ({ host: HOST, port: sentinel.port }));

  return {
    name,
    sentinels: sentinelAddresses,
    sentinelsEnv: sentinelAddresses.map(({ host, port }) => `${host}:${port}`).join(","),
    nodes,
    primaryPort,
    primary: async () => nodeAt(await primaryPort()),
    async killPrimary() {
      const node = nodeAt(await primaryPort());
      node.child.kill("SIGKILL");
      await node.exited;
      return node.port;
    },
    async waitForFailover(oldPort, timeoutMs = 30_000) {
      let port = oldPort;
      await waitFor(
        `no failover away from port ${oldPort}`,
        async () => {
          port = await primaryPort();
          if (port === oldPort) return false;
          const role = (await ask(port, "ROLE")) as [string];
          return role[0] === "master";
        },
        timeoutMs,
        logs,
      );
      return port;
    },
    async waitForReplicas(count, timeoutMs = 30_000) {
      await waitFor(
        `the primary did not get ${count} replicas online`,
        async () => (await replicasOnline(await primaryPort())) >= count,
        timeoutMs,
        logs,
      );
    },
    logs,
    stop,
  };
}
