/** A redis-server of the harness's own on a free port, and a probe reading its CPU, commands and clients. */
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, type Proc, spawnProc, waitUntil } from "../lib/procs.js";

export interface RedisSample {
  cpuSeconds: number;
  commands: number;
  /** calls by command name (lowercase), from INFO commandstats */
  byCommand: Record<string, number>;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly proc: Proc;
  sample(): Promise<RedisSample>;
  /** Client connections other than the probe's own, grouped by connection name (prefix before ":"). */
  clients(): Promise<{ total: number; byName: Record<string, number> }>;
  stop(): Promise<void>;
}

function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** One raw RESP PING: true on +PONG (a refused connection or -LOADING is "not yet"). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let reply = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => finish(false));
    socket.once("error", () => finish(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
  });
}

export async function startRedisServer(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "sse-bench-redis-"));
  const proc = spawnProc("redis-server", "redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--loglevel",
    "warning",
  ]);
  await waitUntil("redis-server to answer PING", () => ping(port), 10_000, proc);
  const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 1 });
  probe.on("error", () => {});
  await probe.connect();
  const probeId = Number(await probe.client("ID"));

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc,
    async sample() {
      const cpu = infoFields(await probe.info("cpu"));
      const stats = infoFields(await probe.info("stats"));
      const commandstats = infoFields(await probe.info("commandstats"));
      const byCommand: Record<string, number> = {};
      for (const [key, value] of commandstats) {
        const calls = /calls=(\d+)/.exec(value);
        if (calls) byCommand[key.replace(/^cmdstat_/, "")] = Number(calls[1]);
      }
      return {
        cpuSeconds: Number(cpu.get("used_cpu_sys") ?? 0) + Number(cpu.get("used_cpu_user") ?? 0),
        commands: Number(stats.get("total_commands_processed") ?? 0),
        byCommand,
      };
    },
    async clients() {
      const list = String(await probe.client("LIST"));
      const byName: Record<string, number> = {};
      let total = 0;
      for (const line of list.split("\n")) {
        const id = /(?:^|\s)id=(\d+)/.exec(line);
        if (!id || Number(id[1]) === probeId) continue;
        total++;
        const name = /(?:^|\s)name=(\S*)/.exec(line)?.[1] ?? "";
        const kind = name === "" ? "(unnamed)" : name.split(":").slice(1).join(":") || name;
        byName[kind] = (byName[kind] ?? 0) + 1;
      }
      return { total, byName };
    },
    async stop() {
      probe.disconnect();
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Redis work between two samples, per delivered event. */
export function redisCost(
  a: RedisSample,
  b: RedisSample,
  seconds: number,
  delivered: number,
  published: number,
  /** Append requests in the same window, when known. */
  requests?: number,
) {
  const cpuSeconds = b.cpuSeconds - a.cpuSeconds;
  const commands = b.commands - a.commands;
  const byCommand: Record<string, number> = {};
  for (const [name, calls] of Object.entries(b.byCommand)) {
    const diff = calls - (a.byCommand[name] ?? 0);
    if (diff > 0) byCommand[name] = diff;
  }
  return {
    cpuPercent: seconds > 0 ? Math.round((cpuSeconds / seconds) * 1000) / 10 : 0,
    commandsPerSecond: seconds > 0 ? Math.round(commands / seconds) : 0,
    cpuMicrosPerDelivered: delivered > 0 ? Math.round(((cpuSeconds * 1e6) / delivered) * 100) / 100 : null,
    cpuMicrosPerPublished: published > 0 ? Math.round(((cpuSeconds * 1e6) / published) * 100) / 100 : null,
    commandsPerDelivered: delivered > 0 ? Math.round((commands / delivered) * 10_000) / 10_000 : null,
    commandsPerPublished: published > 0 ? Math.round((commands / published) * 1000) / 1000 : null,
    ...(requests && requests > 0
      ? { cpuMicrosPerRequest: Math.round(((cpuSeconds * 1e6) / requests) * 100) / 100 }
      : {}),
    byCommand,
  };
}
