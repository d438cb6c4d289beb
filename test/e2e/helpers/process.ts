/** A spawned system tool (nginx, Prometheus) with captured output, exit tracking and a stop by pid. */
import { type ChildProcess, spawn } from "node:child_process";

const MAX_OUTPUT_CHARS = 400_000;

export interface ManagedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  output(): string;
  hasExited(): boolean;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends each signal in turn, waiting `graceMs` after each, until the process has exited. Idempotent. */
  stop(signals?: NodeJS.Signals[], graceMs?: number): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const live = new Set<ChildProcess>();
let hookInstalled = false;
/** nginx's master must get SIGTERM (not SIGKILL) to take its worker with it; both tools accept it. */
function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone
      }
    }
  });
}

export function spawnManaged(binary: string, args: string[]): ManagedProcess {
  installExitHook();
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  const capture = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS / 2);
  };
  child.stdout?.on("data", capture);
  child.stderr?.on("data", capture);
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("error", (error) => {
      output += `\n[spawn error] ${error.message}\n`;
      exitedFlag = true;
      live.delete(child);
      resolve({ code: null, signal: null });
    });
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      live.delete(child);
      resolve({ code, signal });
    });
  });
  return {
    child,
    pid: child.pid ?? -1,
    output: () => output,
    hasExited: () => exitedFlag,
    exited,
    async stop(signals = ["SIGTERM", "SIGKILL"], graceMs = 5_000) {
      for (const signal of signals) {
        if (exitedFlag) return;
        child.kill(signal);
        await Promise.race([exited, sleep(graceMs)]);
      }
      if (!exitedFlag) await Promise.race([exited, sleep(graceMs)]);
    },
  };
}

/** Polls `check` until it returns true; throws `describe()` after `timeoutMs`. */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  describe: () => string,
  pollMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok = false;
    try {
      ok = await check();
    } catch {
      ok = false;
    }
    if (ok) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await sleep(pollMs);
  }
}

/** GET with a timeout; resolves with the status (0 when the request failed) and the body text. */
export async function httpGet(url: string, timeoutMs = 2_000): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  } catch (error) {
    return { status: 0, text: String(error) };
  }
}
