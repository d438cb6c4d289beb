/**
 * Child processes of the harness: each is spawned in its own process group (so nginx's workers go
 * with their master), tracked by pid, and stopped by that id at the end, on an error, or on SIGINT.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";

const OUTPUT_TAIL_CHARS = 8_000;
const STOP_GRACE_MS = 5_000;

export interface Proc {
  readonly name: string;
  readonly pid: number;
  /** Captured stdout+stderr (the tail). */
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  hasExited(): boolean;
  /** SIGTERM to the group, SIGKILL after the grace period. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Map<number, Proc>();

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

export function spawnProc(
  name: string,
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Proc {
  const child: ChildProcess = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${name} (${command})`);
  const pid = child.pid;
  let text = "";
  const capture = (chunk: Buffer) => {
    text += chunk.toString("utf8");
    if (text.length > OUTPUT_TAIL_CHARS * 2) text = text.slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout?.on("data", capture);
  child.stderr?.on("data", capture);
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      live.delete(pid);
      resolve({ code, signal });
    });
  });
  const proc: Proc = {
    name,
    pid,
    output: () => text.slice(-OUTPUT_TAIL_CHARS),
    exited,
    hasExited: () => exitedFlag,
    async stop(graceMs = STOP_GRACE_MS) {
      if (exitedFlag) return;
      killGroup(pid, "SIGTERM");
      const timer = setTimeout(() => killGroup(pid, "SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
      // Whatever the leader left behind in its group (nginx workers) goes too.
      killGroup(pid, "SIGKILL");
    },
  };
  live.set(pid, proc);
  return proc;
}

/** Synchronous last resort (process exit): SIGKILL every group still running. */
export function killAllNow(): void {
  for (const pid of live.keys()) killGroup(pid, "SIGKILL");
  live.clear();
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live.values()].map((proc) => proc.stop(2_000)));
}

// The test helpers' free-port finder serves the harness too (it already shares the OpenAI fixture).
export { freePort } from "../../test/helpers/ports.js";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it is true; the error names what was awaited and the process output. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  proc?: Proc,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc?.hasExited())
      throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.output()}`);
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${proc ? `:\n${proc.output()}` : ""}`,
      );
    }
    await sleep(50);
  }
}

export async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at startup). */
export function openFileLimit(): number {
  const line = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === undefined || soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
}
