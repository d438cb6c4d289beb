/** What every stream store offers: the narrow interface the hub, the runner and the HTTP layer use. */

export type SessionStatus = "running" | "done" | "error" | "cancelled";

export const TERMINAL_TYPES: ReadonlySet<string> = new Set(["done", "error", "cancelled"]);

/** The lifecycle feed: a pseudo-session whose stream never ends. */
export const LIFECYCLE_FEED = "@sessions";

export interface EventInput {
  type: string;
  data: Record<string, unknown>;
}

/** An event as stored: `data` is its JSON text (always one line), so a frame is encoded without re-serialising. */
export interface StoredEvent {
  id: string;
  type: string;
  data: string;
}

export interface SessionInfo {
  id: string;
  status: SessionStatus;
  createdAt: number;
  model: string | null;
  metadata: Record<string, unknown>;
  owner: string | null;
  lastEventId: string | null;
  /** Position of the terminal event, once the session has ended. */
  terminalId: string | null;
  /** What the request that created it asked for (NewSession's), when it said; absent otherwise. */
  fingerprint?: string;
}

export interface NewSession {
  id: string;
  model: string | null;
  metadata: Record<string, unknown>;
  owner: string | null;
  createdAt: number;
  /**
   * A digest of the request that creates it (a caller's own id: POST /api/v1/sessions), kept with it, so
   * that a retry of that request is told from another one asking for the same id.
   */
  fingerprint?: string;
}

/** Identifies a batch of one writer, so a batch re-sent after a lost reply is applied once. */
export interface WriterStamp {
  writerId: string;
  seq: number;
}

export interface AppendOptions {
  /** Create the session (status running) if it does not exist yet; otherwise a missing session fails. */
  createIfMissing?: NewSession;
  writer?: WriterStamp;
  /**
   * Names this append for exactly-once: a repeat with the same id (a command re-sent after a lost reply,
   * or a producer's retry) answers the first outcome and writes nothing, while the record is kept
   * (`requestRecordTtlSeconds`). Key-safe text. Appends without a writer get a random one by default.
   */
  requestId?: string;
  /** What the request asked for: a repeat of its id with another fingerprint is `key_reused`. */
  fingerprint?: string;
  /** Only append if no run holds the session's lease (used to end crashed runs). */
  requireNoLease?: boolean;
  /** Refuse (`limited`) once this many events were appended to the session in the current window. */
  rateLimit?: { events: number; windowSeconds: number };
}

export function rateWindowIndex(nowMs: number, rateLimit: AppendOptions["rateLimit"]): number {
  return rateLimit ? Math.floor(nowMs / (rateLimit.windowSeconds * 1000)) : 0;
}

export type AppendOutcome =
  | {
      kind: "appended";
      ids: string[];
      /** The stream's last position before this batch ("" when it was empty), as in the batch's notice. */
      prevId: string;
      ended: boolean;
      created: boolean;
      owner: string | null;
      /** The session's creation time (ms), as stored. */
      createdAt: number;
      /** This is the first reply of an append already applied (its request id or writer batch repeated). */
      replayed: boolean;
    }
  /** The writer's batch was already applied earlier (re-sent after a lost reply). */
  | { kind: "duplicate" }
  /** A writer's batch arrived before an earlier one of the same writer: re-send from the earliest. */
  | { kind: "out_of_order" }
  | { kind: "missing" }
  | { kind: "ended"; status: SessionStatus }
  | { kind: "leased" }
  /** Over the publish rate: nothing was appended. */
  | { kind: "limited" }
  /** The request id was used before for a different request: nothing was appended. */
  | { kind: "key_reused" };

export interface ReadResult {
  /**
   * In order. When `after` lies before what compaction folded (or is null and something was folded),
   * the first is the session's `snapshot` event, whose id is the last folded event's position.
   */
  events: StoredEvent[];
  /** Set when history after `after` was trimmed without a snapshot (the lifecycle feed): the reader skips to `oldest`. */
  gap: { requested: string; oldest: string | null } | null;
  /**
   * The session's creation stamp when the events were read (null: no session): which incarnation of the
   * id they belong to. An id is free again once its session expired, so a reader authorised for one
   * incarnation checks it (mux/catch-up.ts).
   */
  createdAt: number | null;
}

/** A batch of events appended to one stream, as announced to every instance. */
export interface AppendNotice {
  sessionId: string;
  /** Position of the stream's last event before this batch ("" when the stream was empty). */
  prevId: string;
  events: StoredEvent[];
  /** The session's creation stamp (its incarnation); null when the notice does not say (an older sender). */
  createdAt: number | null;
}

export interface NotificationListener {
  onAppend(notice: AppendNotice): void;
  /** Notices may have been missed (the notification link reconnected): every reader re-reads from the store. */
  onResync(): void;
}

/** Live notifications of appends. One link per instance, whatever the number of watched sessions. */
export interface AppendNotifier {
  setListener(listener: NotificationListener): void;
  /** Resolves once notices for the session are being received. */
  watch(sessionId: string): Promise<void>;
  unwatch(sessionId: string): void;
}

export interface StreamStore {
  readonly kind: "memory" | "redis" | "redis-cluster";
  readonly notifier: AppendNotifier;
  /** False while the backing store is unreachable. */
  isReady(): boolean;
  /** Creates a running session; false when the id is taken. Announces it on the lifecycle feed. */
  createSession(session: NewSession): Promise<boolean>;
  getSession(id: string): Promise<SessionInfo | null>;
  /** Appends a batch atomically; a terminal event ends the session in the same step. */
  append(sessionId: string, events: readonly EventInput[], options?: AppendOptions): Promise<AppendOutcome>;
  /** Up to `count` events strictly after `after` (null: from the first retained event). */
  read(sessionId: string, after: string | null, count: number): Promise<ReadResult>;
  /** Takes or renews the run lease of a session for `ttlMs`. */
  holdLease(sessionId: string, holderId: string, ttlMs: number): Promise<void>;
  releaseLease(sessionId: string): Promise<void>;
  /** Sessions whose lease index entry is older than now: candidates for the crash sweeper. */
  expiredLeases(nowMs: number, limit: number): Promise<string[]>;
  forgetLease(sessionId: string): Promise<void>;
  close(): Promise<void>;
}
