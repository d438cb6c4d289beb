/**
 * Redis connections do not grow with SSE clients: one gateway process holds the same two connections
 * (`<instanceId>:command` and `<instanceId>:subscriber`) with 1 client and with 300 (single-session
 * streams, multiplexed `sessions=` lists, the `@sessions` feed, subscription sets).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type GatewayProcess,
  openSse,
  postJson,
  randomPrefix,
  type SseConnection,
  startGatewayProcess,
} from "../helpers/index.js";

const SESSIONS = 12;
const TOTAL_CLIENTS = 300;
const OPEN_IN_PARALLEL = 50;

/** Names of the clients that CLIENT LIST reports, with their source address. */
async function redisClients(redis: Redis): Promise<Array<{ name: string; addr: string }>> {
  const list = (await redis.client("LIST")) as string;
  return list
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const fields = new Map(
        line
          .trim()
          .split(" ")
          .map((pair) => {
            const at = pair.indexOf("=");
            return [pair.slice(0, at), pair.slice(at + 1)] as const;
          }),
      );
      return { name: fields.get("name") ?? "", addr: fields.get("addr") ?? "" };
    });
}

/** TCP connections that process `pid` holds to `port` on loopback, from /proc (independent of names). */
function tcpConnectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 10) continue;
      const remotePort = Number.parseInt(columns[2]!.split(":")[1]!, 16);
      const state = columns[3];
      // 01 = ESTABLISHED
      if (remotePort === port && state === "01" && inodes.has(columns[9]!)) count++;
    }
  }
  return count;
}

describe("Redis connections per instance", () => {
  let gateway: GatewayProcess;
  let redis: Redis;
  let instanceId: string;
  const prefix = randomPrefix();
  const sessionIds = Array.from({ length: SESSIONS }, (_, i) => `conn-${prefix.slice(2, 10)}-${i}`);
  const streams: SseConnection[] = [];
  const redisUrl = inject("redisUrl");
  const redisPort = Number(new URL(redisUrl).port);

  const ours = async () =>
    (await redisClients(redis)).filter((client) => client.name.startsWith(`${instanceId}:`));

  beforeAll(async () => {
    gateway = await startGatewayProcess({
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: prefix,
      LOG_LEVEL: "info",
      DRAIN_MS: "200",
    });
    await gateway.waitForLog('"msg":"listening"');
    const match = /"instanceId":"(i_[A-Za-z0-9_-]+)"/.exec(gateway.logs());
    if (!match) throw new Error(`no instanceId in the listening log line:\n${gateway.logs().slice(-2000)}`);
    instanceId = match[1]!;
    redis = new Redis(redisUrl);
    // Outside producers' sessions: they stay running, so their streams stay open.
    for (const id of sessionIds) {
      const res = await postJson(`${gateway.url}/api/v1/sessions/${id}/events`, {
        events: [{ type: "token", data: { content: `first of ${id}` } }],
      });
      expect(res.status, res.text).toBe(202);
    }
  });

  afterAll(async () => {
    for (const stream of streams) stream.close();
    redis?.disconnect();
    await gateway?.stop();
  });

  it("holds 2 connections with 1 client and the same 2 with 300", async () => {
    const first = await openSse(`${gateway.url}/api/v1/sessions/${sessionIds[0]}/stream`);
    streams.push(first);
    await first.waitForEvent("token", 10_000);

    const withOne = await ours();
    expect(withOne.map((client) => client.name).sort()).toEqual([
      `${instanceId}:command`,
      `${instanceId}:subscriber`,
    ]);
    expect(tcpConnectionsTo(gateway.pid, redisPort)).toBe(2);

    // 299 more: single-session streams, multiplexed lists, the lifecycle feed, subscription sets.
    const subscriptionIds: string[] = [];
    for (let s = 0; s < 3; s++) {
      const res = await postJson(`${gateway.url}/api/v1/subscriptions`, {
        sessions: sessionIds.slice(s * 4, s * 4 + 4),
      });
      expect(res.status, res.text).toBe(201);
      subscriptionIds.push(res.body.id as string);
    }
    const urls: Array<{ url: string; ready: (stream: SseConnection) => Promise<unknown> }> = [];
    for (let i = 1; i < TOTAL_CLIENTS; i++) {
      const id = sessionIds[i % SESSIONS]!;
      switch (i % 4) {
        case 0:
        case 1:
          urls.push({
            url: `/api/v1/sessions/${id}/stream`,
            ready: (stream) => stream.waitForEvent("token", 20_000),
          });
          break;
        case 2: {
          const list = [0, 1, 2, 3].map((k) => sessionIds[(i + k * 3) % SESSIONS]!);
          urls.push({
            url: `/api/v1/stream?sessions=${list.join(",")}`,
            ready: (stream) =>
              stream.waitFor(
                (events) => list.every((sid) => events.some((e) => e.event === `${sid}:token`)),
                20_000,
              ),
          });
          break;
        }
        default: {
          if (i % 8 === 3) {
            urls.push({
              url: `/api/v1/stream?sessions=@sessions,${id}`,
              ready: (stream) => stream.waitForEvent(`${id}:token`, 20_000),
            });
          } else {
            const sub = subscriptionIds[i % subscriptionIds.length]!;
            urls.push({
              url: `/api/v1/stream?subscription=${sub}`,
              ready: (stream) => stream.waitFor((events) => events.filter((e) => e.id).length >= 4, 20_000),
            });
          }
        }
      }
    }
    for (let at = 0; at < urls.length; at += OPEN_IN_PARALLEL) {
      await Promise.all(
        urls.slice(at, at + OPEN_IN_PARALLEL).map(async ({ url, ready }) => {
          const stream = await openSse(`${gateway.url}${url}`);
          streams.push(stream);
          expect(stream.status, url).toBe(200);
          await ready(stream);
        }),
      );
    }
    expect(streams).toHaveLength(TOTAL_CLIENTS);
    expect(streams.every((stream) => !stream.isClosed())).toBe(true);

    // Every connection is live: a new event of each session reaches all of its readers.
    for (const id of sessionIds) {
      const res = await postJson(`${gateway.url}/api/v1/sessions/${id}/events`, {
        events: [{ type: "token", data: { content: `second of ${id}` } }],
      });
      expect(res.status).toBe(202);
    }
    await Promise.all(
      streams.map((stream) =>
        stream.waitFor(
          (events) => events.some((e) => e.event.endsWith("token") && e.data.includes('"second of ')),
          20_000,
        ),
      ),
    );

    const withMany = await ours();
    expect(withMany.map((client) => client.name).sort()).toEqual([
      `${instanceId}:command`,
      `${instanceId}:subscriber`,
    ]);
    expect(withMany.map((client) => client.addr).sort()).toEqual(withOne.map((client) => client.addr).sort());
    expect(tcpConnectionsTo(gateway.pid, redisPort)).toBe(2);
  }, 60_000);
});
