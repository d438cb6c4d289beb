/** A real redis-server on a free loopback port, one per test run (global setup) or per test that breaks Redis. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";

const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";
const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 10_000;
const READY_POLL_MS = 50;
const PING_TIMEOUT_MS = 500;
const STOP_GRACE_MS = 5_000;
/** A free port can be taken between freePort() and the bind; only then do we pick another. */
const START_ATTEMPTS = 5;
const LOG_TAIL_CHARS = 4_000;

export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The current process's pid (changes on restart). */
  readonly pid: number;
  /** SIGTERM, wait for exit, SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
  /** Starts a stopped server again on the SAME port (a persistent one with its data). */
  start(): Promise<void>;
  /** Stops (if running) and starts again on the SAME port; data is gone unless `persistent`. */
  restart(): Promise<void>;
  /** Stops, and removes a persistent server's data directory. */
  dispose(): Promise<void>;
  /** Captured stdout+stderr of the current process. */
  logs(): string;
}

export interface StartRedisOptions {
  /** A fixed port; default: a free one. */
  port?: number;
  /**
   * Append-only file with fsync on every write, in one data directory kept across stop and start, so a
   * restart keeps every stream (the end-to-end outage test). Default: no persistence.
   */
  persistent?: boolean;
}

// ---- children are killed when the test process exits, however it exits -------------------------------

const liveChildren = new Set<ChildProcess>();
let exitHooksInstalled = false;

function killAllChildren(): void {
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", killAllChildren);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killAllChildren();
      // Alone, our listener would swallow the signal's default action (exit); restore it and re-raise.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

/** Kills `child` with SIGKILL if the test process exits while it still runs. Shared by the process helpers. */
export function killOnExit(child: ChildProcess): void {
  installExitHooks();
  liveChildren.add(child);
  child.once("exit", () => liveChildren.delete(child));
}

// ---- readiness --------------------------------------------------------------------------------------

/** One raw RESP `PING`: true on `+PONG` (a `-LOADING` reply or a refused connection is "not yet"). */
export function pingRedis(port: number, host = HOST, timeoutMs = PING_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    let reply = "";
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("error", () => finish(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface RunningRedis {
  child: ChildProcess;
  dir: string;
  /** A throw-away directory, removed when this process stops (not a persistent server's). */
  ownsDir: boolean;
  output: string[];
  exited: Promise<void>;
  hasExited: () => boolean;
}

class RedisStartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

async function spawnRedis(port: number, dataDir?: string): Promise<RunningRedis> {
  const ownsDir = dataDir === undefined;
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "sse-gw-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    HOST,
    "--save",
    "",
    ...(ownsDir ? ["--appendonly", "no"] : ["--appendonly", "yes", "--appendfsync", "always"]),
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
    "--dir",
    dir,
  ];
  const child = spawn(REDIS_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  killOnExit(child);
  const output: string[] = [];
  const capture = (chunk: Buffer) => output.push(chunk.toString("utf8"));
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
  const running: RunningRedis = { child, dir, ownsDir, output, exited, hasExited: () => exitedFlag };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exitedFlag) {
      if (ownsDir) rmSync(dir, { recursive: true, force: true });
      const text = output.join("");
      throw new RedisStartError(
        `redis-server on port ${port} exited before answering PING` +
          `${spawnError ? ` (${spawnError.message})` : ""}:\n${text.slice(-LOG_TAIL_CHARS)}`,
        /address already in use/i.test(text),
      );
    }
    if (await pingRedis(port)) return running;
    await sleep(READY_POLL_MS);
  }
  await stopRunning(running);
  throw new RedisStartError(
    `redis-server on port ${port} did not answer PING within ${READY_TIMEOUT_MS} ms:\n` +
      output.join("").slice(-LOG_TAIL_CHARS),
    false,
  );
}

async function stopRunning(running: RunningRedis): Promise<void> {
  if (!running.hasExited()) {
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
  if (running.ownsDir) rmSync(running.dir, { recursive: true, force: true });
}

/** Starts `redis-server` on 127.0.0.1 and resolves once it answers PING. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServerHandle> {
  const dataDir = opts.persistent ? mkdtempSync(join(tmpdir(), "sse-gw-redis-data-")) : undefined;
  let port = opts.port ?? (await freePort());
  let running: RunningRedis | undefined;
  for (let attempt = 1; running === undefined; attempt++) {
    try {
      running = await spawnRedis(port, dataDir);
    } catch (error) {
      const retryable = error instanceof RedisStartError && error.addressInUse && opts.port === undefined;
      if (!retryable || attempt >= START_ATTEMPTS) throw error;
      port = await freePort();
    }
  }

  let current: RunningRedis | undefined = running;
  let lastPid = running.child.pid ?? -1;
  let lastOutput = running.output;
  const stop = async (): Promise<void> => {
    const toStop = current;
    current = undefined;
    if (toStop) await stopRunning(toStop);
  };

  const start = async (): Promise<void> => {
    if (current) return;
    // The same port must be reused (clients reconnect to this URL); if something grabbed it meanwhile,
    // wait briefly for it rather than move.
    let next: RunningRedis | undefined;
    for (let attempt = 1; next === undefined; attempt++) {
      try {
        next = await spawnRedis(port, dataDir);
      } catch (error) {
        if (!(error instanceof RedisStartError && error.addressInUse) || attempt >= START_ATTEMPTS)
          throw error;
        await sleep(200);
      }
    }
    current = next;
    lastPid = next.child.pid ?? -1;
    lastOutput = next.output;
  };

  return {
    url: `redis://${HOST}:${port}`,
    port,
    get pid() {
      return current?.child.pid ?? lastPid;
    },
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async dispose() {
      await stop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
    logs: () => lastOutput.join(""),
  };
}
