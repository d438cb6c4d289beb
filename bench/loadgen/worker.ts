/**
 * One load-generator thread: owns a share of the SSE connections, reads their frames, checks every
 * session's sequence per connection (loss, duplicates, reordering) and records publish→receive latency.
 */
import { performance } from "node:perf_hooks";
import { parentPort } from "node:worker_threads";
import { type HistogramData, newHistogram, record } from "../lib/measure.js";
import { newFrameFields, readFrame, readToken, type TokenFields } from "./frames.js";
import { type OpenedStream, openStream } from "./http-stream.js";
import type { Command, ConnSpec, Envelope, Reply, WorkerStats } from "./protocol.js";

/** A frame longer than this without a blank line is a broken stream, not a slow one. */
const MAX_PENDING_CHARS = 16 * 1024 * 1024;
const TOKEN_SUFFIX = ":token";

const port = parentPort!;
let sessionIndex = new Map<string, number>();
let sessionCount = 0;
const conns = new Set<Conn>();
let stats = emptyStats();
let lastElu = performance.eventLoopUtilization();

function emptyStats(): WorkerStats {
  return {
    tokens: 0,
    others: 0,
    bytes: 0,
    chunks: 0,
    inOrder: 0,
    outOfOrder: 0,
    duplicates: 0,
    gaps: 0,
    unknowns: 0,
    parseErrors: 0,
    foreign: 0,
    idBytes: 0,
    ids: 0,
    idMax: 0,
    idLast: 0,
    open: 0,
    closedByServer: 0,
    errors: 0,
    latency: newHistogram(),
    sincePublish: newHistogram(),
    elu: 0,
  };
}

const fields = newFrameFields();
const token: TokenFields = { seq: 0, t: 0, p: -1 };

class Conn {
  /** Last seq seen per session index (0: none yet; seqs start at 1). */
  readonly last: Int32Array;
  readonly wanted: Uint8Array;
  rest = "";
  stream: OpenedStream | null = null;
  closing = false;
  isOpen = false;

  constructor(readonly spec: ConnSpec) {
    this.last = new Int32Array(sessionCount);
    this.wanted = new Uint8Array(sessionCount);
    for (const index of spec.sessions) this.wanted[index] = 1;
  }

  onBody(buffer: Buffer, from: number, to: number): void {
    const now = performance.timeOrigin + performance.now();
    stats.bytes += to - from;
    const piece = buffer.toString("latin1", from, to);
    const text = this.rest === "" ? piece : this.rest + piece;
    let start = 0;
    for (;;) {
      const end = text.indexOf("\n\n", start);
      if (end < 0) break;
      this.onFrame(text, start, end, now);
      start = end + 2;
    }
    this.rest = start === 0 ? text : text.slice(start);
    if (this.rest.length > MAX_PENDING_CHARS) {
      stats.parseErrors++;
      this.rest = "";
    }
  }

  private onFrame(text: string, start: number, end: number, now: number): void {
    readFrame(text, start, end, fields);
    if (fields.idLength >= 0) {
      stats.ids++;
      stats.idBytes += fields.idLength;
      stats.idLast = fields.idLength;
      if (fields.idLength > stats.idMax) stats.idMax = fields.idLength;
    }
    const name = fields.name;
    // Single-session framing names events by type alone: the session is the connection's only one.
    const single = name === "token" && this.spec.sessions.length === 1;
    if (!single && !name.endsWith(TOKEN_SUFFIX)) {
      if (name === "message" && fields.dataStart < 0) return; // retry:, comments
      if (name.endsWith(":gap")) stats.gaps++;
      else if (name.endsWith(":unknown")) stats.unknowns++;
      stats.others++;
      return;
    }
    stats.tokens++;
    const index = single
      ? this.spec.sessions[0]
      : sessionIndex.get(name.slice(0, name.length - TOKEN_SUFFIX.length));
    if (index === undefined || this.wanted[index] === 0) {
      stats.foreign++;
      return;
    }
    if (fields.dataStart < 0 || !readToken(text, fields.dataStart, fields.dataEnd, token)) {
      if (!this.parseSlow(text.slice(fields.dataStart, fields.dataEnd))) {
        stats.parseErrors++;
        return;
      }
    }
    const last = this.last[index]!;
    if (token.seq === last + 1) stats.inOrder++;
    else if (token.seq <= last) {
      stats.duplicates++;
      return;
    } else stats.outOfOrder++;
    this.last[index] = token.seq;
    record(stats.latency, now - token.t);
    if (token.p >= 0) record(stats.sincePublish, now - token.p);
  }

  private parseSlow(data: string): boolean {
    try {
      const value = JSON.parse(data) as { seq?: unknown; t?: unknown; p?: unknown };
      if (typeof value.seq !== "number" || typeof value.t !== "number") return false;
      token.seq = value.seq;
      token.t = value.t;
      token.p = typeof value.p === "number" ? value.p : -1;
      return true;
    } catch {
      return false;
    }
  }

  behindPairs(finals: Int32Array): number {
    let behind = 0;
    for (const index of this.spec.sessions) if (this.last[index]! < finals[index]!) behind++;
    return behind;
  }

  close(): void {
    this.closing = true;
    if (this.isOpen) {
      this.isOpen = false;
      stats.open--;
    }
    this.stream?.close();
  }
}

async function openOne(host: string, portNumber: number, conn: Conn, timeoutMs: number): Promise<number> {
  const started = performance.now();
  conn.stream = await openStream(host, portNumber, conn.spec.path, timeoutMs, {
    onBody: (buffer, from, to) => conn.onBody(buffer, from, to),
    onChunk: () => {
      stats.chunks++;
    },
    onError: () => {
      if (conn.isOpen) stats.errors++;
    },
    onClose: (byServer) => {
      if (!conn.isOpen) return;
      // Stays in `conns`: a connection the server closed early still counts in `behind`.
      conn.isOpen = false;
      stats.open--;
      if (byServer) stats.closedByServer++;
    },
  });
  conn.isOpen = true;
  stats.open++;
  conns.add(conn);
  if (conn.closing) conn.stream.close();
  return performance.now() - started;
}

async function openAll(command: Extract<Command, { op: "open" }>): Promise<Reply> {
  const connectMs: HistogramData = newHistogram();
  const errors: string[] = [];
  let opened = 0;
  let failed = 0;
  let next = 0;
  const runner = async () => {
    while (next < command.conns.length) {
      const conn = new Conn(command.conns[next++]!);
      try {
        record(connectMs, await openOne(command.host, command.port, conn, command.timeoutMs));
        opened++;
      } catch (error) {
        failed++;
        if (errors.length < 5) errors.push((error as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, command.concurrency) }, runner));
  return { op: "opened", opened, failed, errors, connectMs };
}

function snapshot(resetWindow: boolean): Reply {
  const elu = performance.eventLoopUtilization(lastElu);
  lastElu = performance.eventLoopUtilization();
  const out: WorkerStats = { ...stats, elu: elu.utilization };
  if (resetWindow) {
    stats.latency = newHistogram();
    stats.sincePublish = newHistogram();
  }
  return { op: "snapshot", stats: out };
}

async function handle(command: Command): Promise<Reply> {
  switch (command.op) {
    case "init":
      sessionIndex = new Map(command.sessions.map((id, index) => [id, index]));
      sessionCount = command.sessions.length;
      return { op: "ok" };
    case "clock":
      return { op: "clock", clockMs: performance.timeOrigin + performance.now() };
    case "open":
      return openAll(command);
    case "reset": {
      const open = stats.open;
      stats = emptyStats();
      stats.open = open;
      return { op: "ok" };
    }
    case "snapshot":
      return snapshot(command.resetWindow);
    case "behind": {
      let pairs = 0;
      for (const conn of conns) pairs += conn.behindPairs(command.finals);
      return { op: "behind", pairs };
    }
    case "close":
      for (const conn of conns) conn.close();
      conns.clear();
      return { op: "ok" };
  }
}

port.on("message", (message: Envelope<Command>) => {
  handle(message.body).then(
    (body) => port.postMessage({ id: message.id, body } satisfies Envelope<Reply>),
    (error: unknown) =>
      port.postMessage({
        id: message.id,
        body: { op: "error", message: String((error as Error)?.stack ?? error) },
      } satisfies Envelope<Reply>),
  );
});
