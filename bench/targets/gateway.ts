/**
 * The gateway as it ships: `node dist/server.js` against its own redis-server. Also the producer
 * that speaks the gateway's append API, which the raw-node baseline implements too.
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expectOk, httpClient } from "../lib/http.js";
import { newHistogram, record } from "../lib/measure.js";
import { freePort, httpOk, spawnProc, waitUntil } from "../lib/procs.js";
import { startRedisServer } from "./redis.js";
import { type Publisher, type Target, type TargetOptions, tokenData } from "./types.js";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 20_000;
/** The gateway's own bound on one append (MAX_EVENTS_PER_APPEND). */
const MAX_EVENTS_PER_APPEND = 1_000;
const DEFAULT_MAX_SESSIONS_PER_CONNECTION = 256;
const UNLIMITED = 100_000_000;
/** Node flags for both Node servers: SIGUSR2 forces a full GC (see gc-signal.mjs). */
const GC_ON_SIGNAL = ["--expose-gc", "--import", "./bench/targets/gc-signal.mjs"];

function signalGc(pid: number): boolean {
  try {
    process.kill(pid, "SIGUSR2");
    return true;
  } catch {
    return false;
  }
}

/** Node flags for a server under test: the GC signals, and the profiler and stage probe when asked. */
function nodeArgsFor(options: TargetOptions): string[] {
  if (options.profileDir) mkdirSync(options.profileDir, { recursive: true });
  return [
    ...GC_ON_SIGNAL,
    ...(options.profileDir ? ["--cpu-prof", "--cpu-prof-dir", options.profileDir] : []),
    ...(options.stageProbe ? ["--import", "./bench/targets/stage-probe.mjs"] : []),
  ];
}

function probeEnv(options: TargetOptions): Record<string, string> {
  return options.stageProbe ? { STAGE_PROBE_DIR: options.stageProbe.dir } : {};
}

/**
 * Producer over `POST /api/v1/sessions/:id/events`: one request per session per batch. With
 * `stampEvery` > 0, every such request's events also carry `"p"`, the time the request was built.
 */
export function appendApiPublisher(port: number, stampEvery = 0): Publisher {
  const client = httpClient(HOST, port, 128);
  let requests = 0;
  let replies = newHistogram();
  return {
    maxBatch: MAX_EVENTS_PER_APPEND,
    async createSessions(ids) {
      await Promise.all(
        ids.map(async (id) => {
          const body = `{"events":[{"type":"start","data":{"model":"bench","createdAt":"${new Date().toISOString()}"}}]}`;
          const reply = await client.request("POST", `/api/v1/sessions/${id}/events`, body, {
            "content-type": "application/json",
          });
          expectOk(`create session ${id}`, reply);
        }),
      );
    },
    async appendTokens(sessionId, firstSeq, times) {
      const p =
        stampEvery > 0 && ++requests % stampEvery === 0
          ? performance.timeOrigin + performance.now()
          : undefined;
      let body = '{"events":[';
      for (let i = 0; i < times.length; i++) {
        body += `${i === 0 ? "" : ","}{"type":"token","data":${tokenData(firstSeq + i, times[i]!, p)}}`;
      }
      body += "]}";
      const reply = await client.request("POST", `/api/v1/sessions/${sessionId}/events`, body, {
        "content-type": "application/json",
      });
      if (p !== undefined) record(replies, performance.timeOrigin + performance.now() - p);
      expectOk(`append to ${sessionId}`, reply);
    },
    takeStampedReplies() {
      const taken = replies;
      replies = newHistogram();
      return taken;
    },
    close: () => client.close(),
  };
}

export async function startGateway(options: TargetOptions = {}): Promise<Target> {
  const redis = await startRedisServer();
  const port = await freePort();
  const env = {
    MAX_SESSIONS_PER_CONNECTION: String(DEFAULT_MAX_SESSIONS_PER_CONNECTION),
    // Every client of the benchmark is one IP and one (anonymous) subject: lift the abuse limits so
    // they measure nothing here (the limiter's own Redis work per connection and append still runs).
    LIMIT_CONNECTIONS_PER_IP: String(UNLIMITED),
    LIMIT_CONNECTIONS_PER_SUBJECT: String(UNLIMITED),
    LIMIT_PUBLISH_EVENTS_PER_SECOND: String(UNLIMITED),
    LIMIT_RUNS_PER_MINUTE: String(UNLIMITED),
    LIMIT_CONCURRENT_RUNS: String(UNLIMITED),
    LIMIT_NEW_SESSIONS_PER_MINUTE: String(UNLIMITED),
    LIMIT_REQUESTS_IN_FLIGHT_PER_IP: String(UNLIMITED),
    ...options.gatewayEnv,
  };
  if (options.profileDir) mkdirSync(options.profileDir, { recursive: true });
  const entry = options.gatewayEntry ?? "dist/server.js";
  const proc = spawnProc("gateway", process.execPath, [...nodeArgsFor(options), entry], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      ...probeEnv(options),
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: "bench:",
      PORT: String(port),
      HOST,
      LOG_LEVEL: "warn",
      // Stopping is part of every scenario: no long drain.
      DRAIN_MS: "200",
      RUN_DRAIN_TIMEOUT_MS: "1000",
      ...env,
    },
  });
  const base = `http://${HOST}:${port}`;
  try {
    await waitUntil("gateway /readyz", () => httpOk(`${base}/readyz`), READY_TIMEOUT_MS, proc);
  } catch (error) {
    await proc.stop();
    await redis.stop();
    throw error;
  }
  const publisher = appendApiPublisher(port, options.stageProbe?.stampEvery ?? 0);
  return {
    name: "gateway",
    host: HOST,
    port,
    maxSessionsPerConnection: Number(env.MAX_SESSIONS_PER_CONNECTION),
    streamPath: (sessions) => `/api/v1/stream?sessions=${sessions.join(",")}`,
    pids: () => [proc.pid],
    collectGarbage: () => signalGc(proc.pid),
    redis,
    publisher,
    async stop() {
      publisher.close();
      await proc.stop(10_000);
      await redis.stop();
    },
  };
}

/** The baseline: `bench/raw-node-server.mjs`, no Redis, same paths and event shape as the gateway. */
export async function startRawNode(options: TargetOptions = {}): Promise<Target> {
  const port = await freePort();
  const proc = spawnProc(
    "raw-node",
    process.execPath,
    [...nodeArgsFor(options), "bench/raw-node-server.mjs"],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        ...probeEnv(options),
        ...(options.stageProbe ? { STAGE_PROBE_READ_BODY: "1" } : {}),
        PORT: String(port),
        HOST,
      },
    },
  );
  const base = `http://${HOST}:${port}`;
  try {
    await waitUntil("raw-node /healthz", () => httpOk(`${base}/healthz`), READY_TIMEOUT_MS, proc);
  } catch (error) {
    await proc.stop();
    throw error;
  }
  const publisher = appendApiPublisher(port, options.stageProbe?.stampEvery ?? 0);
  return {
    name: "raw-node",
    host: HOST,
    port,
    maxSessionsPerConnection: Number.POSITIVE_INFINITY,
    streamPath: (sessions) => `/api/v1/stream?sessions=${sessions.join(",")}`,
    pids: () => [proc.pid],
    collectGarbage: () => signalGc(proc.pid),
    redis: null,
    publisher,
    async stop() {
      publisher.close();
      await proc.stop();
    },
  };
}
