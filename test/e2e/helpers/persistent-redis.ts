/**
 * A redis-server WITH persistence (append-only file, fsync on every write, no RDB snapshots) in its own
 * temp dir, so that a stop and a start on the same port and dir keep every session: the e2e outage
 * scenario stops Redis mid-stream and expects the streams to go on where they were.
 * (test/helpers/redis-server.ts starts one WITHOUT persistence, for the other suites.)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, killOnExit, pingRedis } from "../../helpers/index.js";

const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";
const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 20_000;
const READY_POLL_MS = 50;
const STOP_GRACE_MS = 10_000;
const START_ATTEMPTS = 5;
const LOG_TAIL_CHARS = 3_000;

export interface PersistentRedis {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The data directory (kept across stop/start, removed by dispose()). */
  readonly dir: string;
  isRunning(): boolean;
  /** SIGTERM (Redis fsyncs the append-only file and exits), SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
  /** Starts again on the same port and dir; resolves once it answers PING (data loaded). */
  start(): Promise<void>;
  /** Stops and removes the data directory. */
  dispose(): Promise<void>;
  logs(): string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  hasExited(): boolean;
}

class StartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

export async function startPersistentRedis(): Promise<PersistentRedis> {
  const dir = mkdtempSync(join(tmpdir(), "sse-e2e-redis-"));
  let output = "";
  let current: Running | undefined;

  const spawnAt = async (port: number): Promise<Running> => {
    const args = [
      "--port",
      String(port),
      "--bind",
      HOST,
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--save",
      "",
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
    ];
    const child = spawn(REDIS_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    killOnExit(child);
    const capture = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (output.length > 200_000) output = output.slice(-100_000);
    };
    child.stdout?.on("data", capture);
    child.stderr?.on("data", capture);
    let exitedFlag = false;
    let spawnError: Error | undefined;
    const exited = new Promise<void>((resolve) => {
      child.once("error", (error) => {
        spawnError = error;
        exitedFlag = true;
        resolve();
      });
      child.once("exit", () => {
        exitedFlag = true;
        resolve();
      });
    });
    const running: Running = { child, exited, hasExited: () => exitedFlag };
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exitedFlag) {
        throw new StartError(
          `redis-server (persistent, port ${port}, dir ${dir}) exited before answering PING` +
            `${spawnError ? ` (${spawnError.message}; is the redis-server package installed?)` : ""}:\n` +
            output.slice(-LOG_TAIL_CHARS),
          /address already in use/i.test(output),
        );
      }
      if (await pingRedis(port)) return running;
      await sleep(READY_POLL_MS);
    }
    await stopRunning(running);
    throw new StartError(
      `redis-server on port ${port} did not answer PING within ${READY_TIMEOUT_MS} ms:\n${output.slice(-LOG_TAIL_CHARS)}`,
      false,
    );
  };

  let port = await freePort();
  for (let attempt = 1; current === undefined; attempt++) {
    try {
      current = await spawnAt(port);
    } catch (error) {
      if (!(error instanceof StartError && error.addressInUse) || attempt >= START_ATTEMPTS) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
      port = await freePort();
    }
  }

  const stop = async (): Promise<void> => {
    const running = current;
    current = undefined;
    if (running) await stopRunning(running);
  };

  return {
    url: `redis://${HOST}:${port}`,
    port,
    dir,
    isRunning: () => current !== undefined && !current.hasExited(),
    stop,
    async start() {
      if (current && !current.hasExited()) return;
      // Same port: clients reconnect to the URL they have. Something may hold it for a moment.
      for (let attempt = 1; ; attempt++) {
        try {
          current = await spawnAt(port);
          return;
        } catch (error) {
          if (!(error instanceof StartError && error.addressInUse) || attempt >= START_ATTEMPTS) throw error;
          await sleep(200);
        }
      }
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    logs: () => output,
  };
}

async function stopRunning(running: Running): Promise<void> {
  if (running.hasExited()) return;
  running.child.kill("SIGTERM");
  const timedOut = await Promise.race([
    running.exited.then(() => false),
    sleep(STOP_GRACE_MS).then(() => true),
  ]);
  if (timedOut) {
    running.child.kill("SIGKILL");
    await running.exited;
  }
}
