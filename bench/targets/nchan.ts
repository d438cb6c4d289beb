/**
 * The C peer: nginx + nchan (Debian packages) with one worker, messages stored in its own Redis
 * (`nchan_use_redis on`), subscribers on nchan's multiplexed channels in EventSource mode. Each
 * publish carries `X-EventSource-Event: <sid>:token`, so frames are named like the gateway's.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectOk, httpClient } from "../lib/http.js";
import { childPids } from "../lib/measure.js";
import { freePort, openFileLimit, spawnProc, waitUntil } from "../lib/procs.js";
import { startRedisServer } from "./redis.js";
import { type Publisher, type Target, tokenData } from "./types.js";

const HOST = "127.0.0.1";
const MODULE_PATH = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/** nchan's own limit on multiplexed channels per subscriber. */
const NCHAN_MAX_CHANNELS = 255;
const MAX_CONNECTIONS = 20_000;

function nginxConf(dir: string, port: number, redisUrl: string): string {
  const files = Math.min(openFileLimit(), 65_536);
  return `load_module ${MODULE_PATH};
worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile ${files};
events { worker_connections ${Math.min(MAX_CONNECTIONS, files - 100)}; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  nchan_use_redis on;
  nchan_redis_url ${redisUrl};
  server {
    listen ${HOST}:${port} backlog=4096;
    location = /healthz { return 200 "ok"; }
    location = /pub {
      nchan_publisher;
      nchan_channel_id $arg_id;
    }
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id $arg_channels;
      nchan_channel_id_split_delimiter ",";
      # 200 channel ids in one request exceed the default 1024-character limit (a 403 otherwise).
      nchan_max_channel_id_length 8192;
      nchan_subscriber_first_message newest;
    }
  }
}
`;
}

function nchanPublisher(port: number): Publisher {
  const client = httpClient(HOST, port, 128);
  return {
    maxBatch: 1,
    // Channels come into being with their first message; subscribers may wait on them before.
    async createSessions() {},
    async appendTokens(sessionId, firstSeq, times) {
      for (let i = 0; i < times.length; i++) {
        const reply = await client.request(
          "POST",
          `/pub?id=${sessionId}`,
          tokenData(firstSeq + i, times[i]!),
          {
            "content-type": "application/json",
            "x-eventsource-event": `${sessionId}:token`,
          },
        );
        expectOk(`nchan publish to ${sessionId}`, reply);
      }
    },
    close: () => client.close(),
  };
}

export async function startNchan(): Promise<Target> {
  if (!existsSync(MODULE_PATH))
    throw new Error(`nchan module not found at ${MODULE_PATH} (apt install libnginx-mod-nchan)`);
  const redis = await startRedisServer();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "sse-bench-nchan-"));
  mkdirSync(join(dir, "logs"));
  writeFileSync(join(dir, "nginx.conf"), nginxConf(dir, port, redis.url));
  const proc = spawnProc("nginx", "nginx", [
    "-p",
    dir,
    "-c",
    join(dir, "nginx.conf"),
    "-e",
    join(dir, "error.log"),
  ]);
  try {
    await waitUntil(
      "nginx /healthz",
      async () => {
        const reply = await fetch(`http://${HOST}:${port}/healthz`).catch(() => null);
        await reply?.arrayBuffer();
        return reply?.status === 200;
      },
      10_000,
      proc,
    );
  } catch (error) {
    await proc.stop();
    await redis.stop();
    throw error;
  }
  // nginx answers before nchan has connected to Redis (subscribers then get 503): wait for a publish.
  const probe = httpClient(HOST, port, 1);
  try {
    await waitUntil(
      "nchan to reach Redis",
      async () => {
        const reply = await probe.request("POST", "/pub?id=bench-ready", "{}").catch(() => null);
        return reply !== null && reply.status >= 200 && reply.status < 300;
      },
      10_000,
      proc,
    );
  } catch (error) {
    await proc.stop();
    await redis.stop();
    throw error;
  } finally {
    probe.close();
  }
  const publisher = nchanPublisher(port);
  return {
    name: "nchan",
    host: HOST,
    port,
    maxSessionsPerConnection: NCHAN_MAX_CHANNELS,
    streamPath: (sessions) => `/sub?channels=${sessions.join(",")}`,
    pids: () => [proc.pid, ...childPids(proc.pid)],
    collectGarbage: () => false,
    redis,
    publisher,
    async stop() {
      publisher.close();
      await proc.stop();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
