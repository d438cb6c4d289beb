/**
 * The gateway as a separate Node process running from source (`node --import tsx src/server.ts`), for
 * tests that kill instances, send SIGTERM, or run several instances against one Redis.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "./ports.js";
import { killOnExit } from "./redis-server.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const HEALTH_POLL_MS = 50;
const HEALTH_TIMEOUT_MS = 20_000;
const HEALTH_REQUEST_TIMEOUT_MS = 1_000;
const STOP_GRACE_MS = 15_000;
/** Captured output is capped; the tail is what explains a failure. */
const MAX_LOG_CHARS = 4_000_000;
const LOG_TAIL_CHARS = 4_000;

export interface GatewayExit {
  code: number | null;
  signal: string | null;
}

export interface GatewayProcess {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Captured stdout+stderr so far. */
  logs(): string;
  /** Resolves once the output contains `pattern`; rejects on timeout or exit, with the log tail. */
  waitForLog(pattern: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal (default SIGKILL: a crash); see stop() for a graceful shutdown. */
  kill(signal?: NodeJS.Signals): void;
  readonly exited: Promise<GatewayExit>;
  /** SIGTERM, wait for exit, SIGKILL after 15 s. Idempotent. */
  stop(): Promise<void>;
}

export interface StartGatewayOptions {
  /** The entry file, relative to the repo root. Default `src/server.ts`. */
  entry?: string;
  healthTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const tail = (text: string) => text.slice(-LOG_TAIL_CHARS);

async function isHealthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts the gateway with `env` merged over process.env (PORT: a free one unless given, HOST 127.0.0.1,
 * LOG_LEVEL info unless given) and resolves once `GET /healthz` answers 200.
 */
export async function startGatewayProcess(
  env: Record<string, string>,
  opts: StartGatewayOptions = {},
): Promise<GatewayProcess> {
  const port = env.PORT !== undefined ? Number(env.PORT) : await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ["--import", "tsx", opts.entry ?? "src/server.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, HOST: "127.0.0.1", LOG_LEVEL: "info", ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  killOnExit(child);

  let output = "";
  const logWaiters = new Set<() => void>();
  const capture = (chunk: Buffer): void => {
    output += chunk.toString("utf8");
    if (output.length > MAX_LOG_CHARS) output = output.slice(-MAX_LOG_CHARS / 2);
    for (const check of [...logWaiters]) check();
  };
  child.stdout?.on("data", capture);
  child.stderr?.on("data", capture);

  let exitInfo: GatewayExit | undefined;
  const exited = new Promise<GatewayExit>((resolve) => {
    child.once("error", (error) => {
      output += `\n[spawn error] ${error.message}\n`;
      exitInfo ??= { code: null, signal: null };
      resolve(exitInfo);
    });
    child.once("exit", (code, signal) => {
      exitInfo ??= { code, signal };
      resolve(exitInfo);
      for (const check of [...logWaiters]) check();
    });
  });

  const kill = (signal: NodeJS.Signals = "SIGKILL"): void => {
    if (exitInfo === undefined) child.kill(signal);
  };
  const stop = async (): Promise<void> => {
    if (exitInfo !== undefined) return;
    child.kill("SIGTERM");
    const timedOut = await Promise.race([exited.then(() => false), sleep(STOP_GRACE_MS).then(() => true)]);
    if (timedOut) {
      child.kill("SIGKILL");
      await exited;
    }
  };

  const healthTimeoutMs = opts.healthTimeoutMs ?? HEALTH_TIMEOUT_MS;
  const deadline = Date.now() + healthTimeoutMs;
  for (;;) {
    if (exitInfo !== undefined) {
      throw new Error(
        `gateway exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before /healthz answered 200:\n` +
          tail(output),
      );
    }
    if (await isHealthy(url)) break;
    if (Date.now() >= deadline) {
      child.kill("SIGKILL");
      await exited;
      throw new Error(`gateway /healthz at ${url} not 200 within ${healthTimeoutMs} ms:\n${tail(output)}`);
    }
    await sleep(HEALTH_POLL_MS);
  }

  return {
    url,
    port,
    pid: child.pid ?? -1,
    logs: () => output,
    waitForLog(pattern, timeoutMs = 5_000) {
      const found = () =>
        typeof pattern === "string" ? output.includes(pattern) : output.search(pattern) !== -1;
      return new Promise<void>((resolve, reject) => {
        const finish = (error?: Error): void => {
          logWaiters.delete(check);
          clearTimeout(timer);
          if (error) reject(error);
          else resolve();
        };
        function check(): void {
          if (found()) finish();
          else if (exitInfo !== undefined)
            finish(new Error(`gateway exited before logging ${String(pattern)}:\n${tail(output)}`));
        }
        const timer = setTimeout(
          () =>
            finish(
              new Error(`gateway did not log ${String(pattern)} within ${timeoutMs} ms:\n${tail(output)}`),
            ),
          timeoutMs,
        );
        logWaiters.add(check);
        check();
      });
    },
    kill,
    exited,
    stop,
  };
}
