/** Messages between the load generator's coordinator (main thread) and its workers. */
import type { HistogramData } from "../lib/measure.js";

export interface ConnSpec {
  path: string;
  /** Indexes into the session list given at `init`. */
  sessions: number[];
}

export type Command =
  | { op: "init"; sessions: string[] }
  | { op: "clock" }
  | { op: "open"; host: string; port: number; conns: ConnSpec[]; concurrency: number; timeoutMs: number }
  | { op: "reset" }
  | { op: "snapshot"; resetWindow: boolean }
  | { op: "behind"; finals: Int32Array }
  | { op: "close" };

/** Counters since the last `reset` (a step); the histogram since the last window reset. */
export interface WorkerStats {
  /** `<sid>:token` events. */
  tokens: number;
  /** Other named events (`connected`, `<sid>:start`, `<sid>:done`, ...). */
  others: number;
  /** SSE body bytes (after HTTP chunk decoding). */
  bytes: number;
  chunks: number;
  /** Token arrivals whose seq was the session's last + 1 on that connection. */
  inOrder: number;
  /** Arrivals whose seq skipped ahead (something missing before it). */
  outOfOrder: number;
  /** Arrivals whose seq was not above the last one seen (a duplicate or a late one). */
  duplicates: number;
  gaps: number;
  unknowns: number;
  parseErrors: number;
  /** Tokens of a session the connection did not ask for. */
  foreign: number;
  idBytes: number;
  ids: number;
  idMax: number;
  idLast: number;
  open: number;
  closedByServer: number;
  errors: number;
  latency: HistogramData;
  /** Publish stamp → receipt, for the events of traced appends (the stage probe's). */
  sincePublish: HistogramData;
  /** Event-loop utilisation (0..1) since the previous snapshot. */
  elu: number;
}

export type Reply =
  | { op: "ok" }
  | { op: "clock"; clockMs: number }
  | { op: "opened"; opened: number; failed: number; errors: string[]; connectMs: HistogramData }
  | { op: "snapshot"; stats: WorkerStats }
  | { op: "behind"; pairs: number }
  | { op: "error"; message: string };

export interface Envelope<T> {
  id: number;
  body: T;
}
