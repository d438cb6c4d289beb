/**
 * One SSE connection reading one or many sessions. Each session is a `Reader` of the hub; the
 * connection frames its events (single: `id` is the position; multiplexed: `id` is the cursor of the
 * whole connection), catches behind readers up from the store a batch at a time in round-robin (so
 * one busy session cannot starve the others, and memory stays bounded), and closes when its sessions
 * have ended.
 */
import type { Logger } from "pino";
import type { Hub } from "../hub/hub.js";
import type { Reader } from "../hub/reader.js";
import type { Metrics } from "../metrics.js";
import { idLine, muxBody, plainFrame, singleBody } from "../sse/frames.js";
import type { SseWriter } from "../sse/writer.js";
import { comparePositions, parsePosition } from "../store/positions.js";
import {
  LIFECYCLE_FEED,
  type ReadResult,
  type SessionInfo,
  type StoredEvent,
  type StreamStore,
  TERMINAL_TYPES,
} from "../store/types.js";
import type { CursorState, CursorTracker } from "./cursor.js";
import { mergeTokenRuns } from "./tokens.js";

export interface StreamConnectionOptions {
  /** "single": one session, `id` = position, plain event names. "mux": `<sessionId>:<type>`, `id` = cursor. */
  framing: "single" | "mux";
  /** Close once every session has ended (a `sessions=` or single-session stream). */
  closeWhenAllEnded: boolean;
  mergeTokensWhenBehind: boolean;
  catchUpBatch: number;
  /**
   * Catch-up batches (`Hub.readBatch`) in progress at once for this connection; each reader may also
   * have its next batch read ahead by the hub.
   */
  maxConcurrentReads: number;
  retryReadAfterMs: number;
}

export interface StreamConnectionDeps {
  hub: Hub;
  store: StreamStore;
  writer: SseWriter;
  metrics: Metrics;
  logger: Logger;
  /** The multiplexed cursor; null for single-session framing. */
  tracker: CursorTracker | null;
}

const LIVE = 1;
const READING = 2;
const DIRTY = 4;
const GAP_CHECKED = 8;
const FINISHED = 16;
const QUEUED = 32;
/** A `Hub.readBatch` of this reader is running (`reading` also covers a batch the hub holds for it). */
const CATCHING_UP = 64;

/** Up to this many readers, a connection finds one by scanning its array. */
const READERS_SCANNED = 32;

/**
 * A reader lives as long as its connection, one per session: its flags share one small integer
 * (behind the accessors) instead of a field each.
 */
class SessionReader implements Reader {
  position: string | null;
  private flags: number;

  constructor(
    readonly sessionId: string,
    readonly index: number,
    start: string | null,
    private readonly connection: StreamConnection,
    /** Events this client may not see are skipped (the lifecycle feed, for a reader who is not admin). */
    readonly visible: ((event: StoredEvent) => boolean) | null,
  ) {
    this.position = start;
    this.flags = start === null ? GAP_CHECKED : 0;
  }

  get state(): "live" | "behind" {
    return (this.flags & LIVE) !== 0 ? "live" : "behind";
  }
  set state(state: "live" | "behind") {
    this.set(LIVE, state === "live");
  }
  get reading(): boolean {
    return (this.flags & READING) !== 0;
  }
  set reading(on: boolean) {
    this.set(READING, on);
  }
  get dirty(): boolean {
    return (this.flags & DIRTY) !== 0;
  }
  set dirty(on: boolean) {
    this.set(DIRTY, on);
  }
  get gapChecked(): boolean {
    return (this.flags & GAP_CHECKED) !== 0;
  }
  set gapChecked(on: boolean) {
    this.set(GAP_CHECKED, on);
  }
  get finished(): boolean {
    return (this.flags & FINISHED) !== 0;
  }
  set finished(on: boolean) {
    this.set(FINISHED, on);
  }
  get queued(): boolean {
    return (this.flags & QUEUED) !== 0;
  }
  set queued(on: boolean) {
    this.set(QUEUED, on);
  }
  get catchingUp(): boolean {
    return (this.flags & CATCHING_UP) !== 0;
  }
  set catchingUp(on: boolean) {
    this.set(CATCHING_UP, on);
  }

  canTakeLive(): boolean {
    return this.connection.canTakeLive();
  }

  deliver(events: readonly StoredEvent[], gap: ReadResult["gap"], fromStore: boolean): void {
    this.connection.deliver(this, events, gap, fromStore);
  }

  requestCatchUp(): void {
    this.connection.scheduleCatchUp(this);
  }

  holdReadAhead(): boolean {
    return this.connection.holdReadAhead();
  }

  releaseReadAhead(): void {
    this.connection.releaseReadAhead();
  }

  private set(flag: number, on: boolean): void {
    this.flags = on ? this.flags | flag : this.flags & ~flag;
  }
}

export class StreamConnection {
  /** Most connections read a handful of sessions: a plain array, indexed by id only once it is long. */
  private readonly readers: SessionReader[] = [];
  private readersById: Map<string, SessionReader> | null = null;
  private catchUpQueue: SessionReader[] = [];
  private readsInFlight = 0;
  /** Batches the hub holds read ahead for this connection's readers: at most `maxConcurrentReads`. */
  private heldReadAheads = 0;
  private closed = false;
  private acceptingClose = false;
  private batchesSent = 0;

  constructor(
    private readonly deps: StreamConnectionDeps,
    private readonly options: StreamConnectionOptions,
  ) {}

  get sessionIds(): string[] {
    return this.readers.map((reader) => reader.sessionId);
  }

  canTakeLive(): boolean {
    return this.deps.writer.writable;
  }

  /** Room for one more batch read ahead: a far-behind connection holds a few, not one per session. */
  holdReadAhead(): boolean {
    if (this.heldReadAheads >= this.options.maxConcurrentReads) return false;
    this.heldReadAheads++;
    return true;
  }

  releaseReadAhead(): void {
    this.heldReadAheads--;
  }

  /**
   * Adds a session at its starting point: from its beginning (`none`), after a position (`at`),
   * or not at all when the client already received its end (`finished`).
   */
  async addSession(
    sessionId: string,
    index: number,
    start: CursorState,
    info: SessionInfo | null,
    visible: ((event: StoredEvent) => boolean) | null = null,
  ): Promise<void> {
    if (this.closed || this.findReader(sessionId) || start.kind === "finished") return;
    const position = start.kind === "at" ? start.position : null;
    if (sessionId !== LIFECYCLE_FEED && info === null) {
      // Unknown, or expired since the client last read it: say so once, and keep watching.
      this.send(
        position === null
          ? plainFrame(this.eventName(sessionId, "unknown"), {})
          : plainFrame(this.eventName(sessionId, "gap"), { requested: position, oldest: null }),
      );
    }
    if (hasReceivedEnd(info, position)) {
      this.deps.tracker?.markFinished(index);
      return;
    }
    const reader = new SessionReader(this.deps.hub.sessionKey(sessionId), index, position, this, visible);
    this.addReader(reader);
    await this.deps.hub.join(reader);
    if (this.closed) this.deps.hub.leave(reader);
  }

  /** Adds a session this request is creating (no events yet): its reader is live from the start. */
  async addNewSession(sessionId: string, index: number): Promise<void> {
    if (this.closed || this.findReader(sessionId)) return;
    const reader = new SessionReader(this.deps.hub.sessionKey(sessionId), index, null, this, null);
    this.addReader(reader);
    await this.deps.hub.joinNew(reader);
    if (this.closed) this.deps.hub.leave(reader);
  }

  /** Called once the initial sessions are added: from now on the connection closes when all have ended. */
  sessionsAdded(): void {
    this.acceptingClose = true;
    this.closeIfAllEnded();
  }

  /** A session this client may not read: said once, never streamed. */
  refuseSession(sessionId: string): void {
    this.send(plainFrame(this.eventName(sessionId, "forbidden"), {}));
  }

  removeSession(sessionId: string): void {
    const reader = this.findReader(sessionId);
    if (!reader) return;
    this.readers.splice(this.readers.indexOf(reader), 1);
    this.readersById?.delete(sessionId);
    // A catch-up read still in flight for it then delivers nothing (nor puts it back in the cursor).
    reader.finished = true;
    this.deps.hub.leave(reader);
    this.deps.tracker?.forget(reader.index);
  }

  /** Sends a connection-level frame (no id). */
  send(frame: string): void {
    this.deps.writer.send(frame);
  }

  /** The socket drained: every reader that fell behind catches up. */
  onDrain(): void {
    for (const reader of this.readers) {
      if (reader.state === "behind" && !reader.finished) this.scheduleCatchUp(reader);
    }
    this.pump();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const reader of this.readers) this.deps.hub.leave(reader);
    this.readers.length = 0;
    this.readersById = null;
    this.catchUpQueue = [];
  }

  scheduleCatchUp(reader: SessionReader): void {
    if (this.closed || reader.queued || reader.finished) return;
    reader.queued = true;
    this.catchUpQueue.push(reader);
    this.pump();
  }

  deliver(
    reader: SessionReader,
    events: readonly StoredEvent[],
    gap: ReadResult["gap"],
    fromStore: boolean,
  ): void {
    if (this.closed || reader.finished) return;
    const { writer, tracker, metrics } = this.deps;
    if (gap) writer.send(plainFrame(this.eventName(reader.sessionId, "gap"), gap));
    let batch = events;
    if (fromStore && this.options.mergeTokensWhenBehind && events.length >= this.options.catchUpBatch) {
      const result = mergeTokenRuns(events);
      batch = result.events;
      if (result.merged > 0) metrics.mergedTokens.inc(result.merged);
    }
    let frames = "";
    let ended = false;
    for (const event of batch) {
      reader.position = event.id;
      if (reader.visible && !reader.visible(event)) {
        tracker?.setPosition(reader.index, event.id);
        continue;
      }
      if (TERMINAL_TYPES.has(event.type) && reader.sessionId !== LIFECYCLE_FEED) ended = true;
      if (tracker) {
        if (ended) tracker.markFinished(reader.index);
        else tracker.setPosition(reader.index, event.id);
        frames += idLine(tracker.encode()) + muxBody(reader.sessionId, event);
      } else {
        frames += idLine(event.id) + singleBody(event);
      }
      if (ended) break;
    }
    if (frames === "") return;
    writer.send(frames);
    metrics.addDelivered(batch.length);
    if (tracker && (this.batchesSent++ & 63) === 0) metrics.cursorBytes.observe(tracker.encode().length);
    if (ended) this.markFinished(reader);
  }

  private markFinished(reader: SessionReader): void {
    reader.finished = true;
    this.deps.tracker?.markFinished(reader.index);
    if (this.findReader(reader.sessionId) === reader) this.deps.hub.leave(reader);
    this.closeIfAllEnded();
  }

  private closeIfAllEnded(): void {
    if (!this.acceptingClose || !this.options.closeWhenAllEnded || !this.allEnded()) return;
    this.close();
    this.deps.writer.end();
  }

  /** True when every session of the connection has ended (and none is still expected). */
  private allEnded(): boolean {
    for (const reader of this.readers) if (!reader.finished) return false;
    return true;
  }

  private findReader(sessionId: string): SessionReader | undefined {
    if (this.readersById) return this.readersById.get(sessionId);
    for (const reader of this.readers) if (reader.sessionId === sessionId) return reader;
    return undefined;
  }

  private addReader(reader: SessionReader): void {
    this.readers.push(reader);
    if (this.readersById) this.readersById.set(reader.sessionId, reader);
    else if (this.readers.length > READERS_SCANNED) {
      this.readersById = new Map(this.readers.map((each) => [each.sessionId, each]));
    }
  }

  private eventName(sessionId: string, type: string): string {
    return this.options.framing === "mux" ? `${sessionId}:${type}` : type;
  }

  private pump(): void {
    while (
      !this.closed &&
      this.deps.writer.writable &&
      this.readsInFlight < this.options.maxConcurrentReads &&
      this.catchUpQueue.length > 0
    ) {
      const reader = this.catchUpQueue.shift()!;
      // An idle connection's queue stays empty for long: a fresh array lets its grown store go.
      if (this.catchUpQueue.length === 0) this.catchUpQueue = [];
      reader.queued = false;
      if (reader.finished || reader.catchingUp) continue;
      this.readsInFlight++;
      reader.catchingUp = true;
      this.deps.hub.readBatch(reader).then(
        (more) => this.readDone(reader, more),
        (error: unknown) => this.readFailed(reader, error),
      );
    }
  }

  private readDone(reader: SessionReader, more: boolean): void {
    reader.catchingUp = false;
    this.readsInFlight--;
    // Round-robin: a session with more to read goes to the back of the queue.
    if (more) this.scheduleCatchUp(reader);
    this.pump();
  }

  private readFailed(reader: SessionReader, error: unknown): void {
    reader.catchingUp = false;
    this.readsInFlight--;
    reader.state = "behind";
    this.deps.logger.warn({ err: error, sessionId: reader.sessionId }, "catch-up read failed; retrying");
    setTimeout(() => this.scheduleCatchUp(reader), this.options.retryReadAfterMs).unref();
    this.pump();
  }
}

/** Whether a client at `position` already received the session's terminal event. */
export function hasReceivedEnd(info: SessionInfo | null, position: string | null): boolean {
  if (!info?.terminalId || position === null || !parsePosition(position)) return false;
  return comparePositions(position, info.terminalId) >= 0;
}
