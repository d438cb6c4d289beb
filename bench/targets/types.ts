/** What every server under test offers the scenarios: where to subscribe, how to publish, what to measure. */
import type { HistogramData } from "../lib/measure.js";
import type { RedisServer } from "./redis.js";

export type TargetName = "gateway" | "raw-node" | "nchan";
export const TARGET_NAMES: readonly TargetName[] = ["gateway", "raw-node", "nchan"];

/** The token every benchmark event carries: short, like a real model token. */
export const TOKEN_CONTENT = " tok";

/**
 * One token event's data, always with this key order so the load generator can read `seq` and `t`
 * without a JSON parse: `{"content":" tok","seq":N,"t":T}`. `t` is the time the event came due in ms
 * since the epoch (performance.timeOrigin + performance.now()), `seq` counts from 1 per session. `p`,
 * only on the appends the stage probe traces, is when the append request was built and sent.
 */
export function tokenData(seq: number, t: number, p?: number): string {
  return p === undefined
    ? `{"content":"${TOKEN_CONTENT}","seq":${seq},"t":${t}}`
    : `{"content":"${TOKEN_CONTENT}","seq":${seq},"t":${t},"p":${p}}`;
}

export interface Publisher {
  /** Events one request may carry. */
  readonly maxBatch: number;
  /** Makes the sessions exist (the gateway: one `start` event each), so subscribers see no `unknown`. */
  createSessions(ids: readonly string[]): Promise<void>;
  /** Appends token events `firstSeq …` stamped `times[i]`, in one request where the server allows. */
  appendTokens(sessionId: string, firstSeq: number, times: readonly number[]): Promise<void>;
  /**
   * With the stage probe: publish time → reply, for the stamped appends since the last call (then
   * reset). Absent on publishers that never stamp.
   */
  takeStampedReplies?(): HistogramData;
  close(): void;
}

export interface Target {
  readonly name: TargetName;
  readonly host: string;
  readonly port: number;
  /** The request path of one SSE connection multiplexing `sessions`. */
  streamPath(sessions: readonly string[]): string;
  /** Most sessions one connection may multiplex. */
  readonly maxSessionsPerConnection: number;
  /** The server's processes (nginx: master and workers), for CPU and RSS. */
  pids(): number[];
  readonly redis: RedisServer | null;
  readonly publisher: Publisher;
  /** Asks the server to collect garbage (the Node servers, via SIGUSR2); false when it cannot. */
  collectGarbage(): boolean;
  stop(): Promise<void>;
}

export interface TargetOptions {
  /** Extra environment for the gateway (scenario-specific limits). */
  gatewayEnv?: Record<string, string>;
  /** Directory for `node --cpu-prof` output of the Node servers; unset: no profiling. */
  profileDir?: string;
  /**
   * The gateway's entry point, for a before/after comparison with another build (e.g. a `git
   * worktree` of an older commit, built there); default this checkout's `dist/server.js`.
   */
  gatewayEntry?: string;
  /**
   * Runs the Node servers with the stage probe preloaded (stage-probe.mjs, writing into `dir`); their
   * publisher stamps every `stampEvery`-th append with its publish time.
   */
  stageProbe?: { dir: string; stampEvery: number };
}
