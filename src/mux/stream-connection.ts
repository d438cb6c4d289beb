/**
 * One SSE connection reading one or many sessions. Each session is a `SessionReader`, whose state only
 * this connection moves: the hub pushes it batches (live delivery), and the connection's catch-up
 * (catch-up.ts) reads it from the store while it is behind. The connection frames events (single: `id`
 * is the position; multiplexed: `id` is the cursor of the whole connection) and closes when its
 * sessions have ended.
 */
import type { Hub } from "../hub/hub.js";
import { idLine, muxBody, plainFrame, singleBody } from "../sse/frames.js";
import type { SseWriter } from "../sse/writer.js";
import { comparePositions, parsePosition } from "../store/positions.js";
import { isLifecycleFeed } from "../store/session-fields.js";
import {
  LIFECYCLE_FEED,
  type ReadResult,
  type SessionInfo,
  type StoredEvent,
  TERMINAL_TYPES,
} from "../store/types.js";
import { CatchUp, type CatchUpDeps, type CatchUpOptions, type CatchUpOwner } from "./catch-up.js";
import type { CursorState, CursorTracker } from "./cursor.js";
import { type EventView, type ReaderOwner, SessionReader } from "./session-reader.js";

export interface StreamConnectionOptions extends CatchUpOptions {
  /** "single": one session, `id` = position, plain event names. "mux": `<sessionId>:<type>`, `id` = cursor. */
  framing: "single" | "mux";
  /** Close once every session has ended (a `sessions=` or single-session stream). */
  closeWhenAllEnded: boolean;
}

/** Also the catch-up's: the store it reads, the metrics and logger. */
export interface StreamConnectionDeps extends CatchUpDeps {
  hub: Hub;
  writer: SseWriter;
  /** The multiplexed cursor; null for single-session framing. */
  tracker: CursorTracker | null;
}

/** Up to this many readers, a connection finds one by scanning its array. */
const READERS_SCANNED = 32;

export class StreamConnection implements ReaderOwner, CatchUpOwner {
  /** Most connections read a handful of sessions: a plain array, indexed by id only once it is long. */
  private readonly readers: SessionReader[] = [];
  private readersById: Map<string, SessionReader> | null = null;
  /** Only while some reader is behind. */
  private catchingUp: CatchUp | null = null;
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

  /**
   * Adds a session at its starting point: from its beginning (`none`), after a position (`at`),
   * or not at all when the client already received its end (`finished`).
   */
  async addSession(
    sessionId: string,
    index: number,
    start: CursorState,
    info: SessionInfo | null,
    view: EventView | null = null,
    /** The incarnation the client's reading is bound to (null: any); see SessionReader. */
    incarnation: number | null = null,
  ): Promise<void> {
    if (this.closed || this.findReader(sessionId) || start.kind === "finished") return;
    const position = start.kind === "at" ? start.position : null;
    if (!isLifecycleFeed(sessionId) && info === null) {
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
    const reader = new SessionReader(
      this.deps.hub.sessionKey(sessionId),
      index,
      position,
      this,
      view,
      false,
      incarnation,
    );
    this.addReader(reader);
    // Read only once notices are flowing: an append between the read and the watch would be missed.
    await this.deps.hub.join(reader);
    if (this.closed) this.deps.hub.leave(reader);
    else this.catchUp(reader);
  }

  /**
   * Adds a session this request is creating (no events yet): its reader is live from the start, and
   * in the hub before this returns its promise, so the run's first batch handed over locally reaches
   * it. Should another instance append before the watch is in place, the next batch it is pushed does
   * not follow its position, and it catches up from the store.
   */
  async addNewSession(sessionId: string, index: number): Promise<void> {
    if (this.closed || this.findReader(sessionId)) return;
    const reader = new SessionReader(this.deps.hub.sessionKey(sessionId), index, null, this, null, true);
    this.addReader(reader);
    await this.deps.hub.join(reader);
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
    this.closeReader(reader);
    this.deps.tracker?.forget(reader.index);
  }

  /** Sends a connection-level frame (no id). */
  send(frame: string): void {
    this.deps.writer.send(frame);
  }

  /** The socket drained: readers that fell behind meanwhile (queued as they did) catch up. */
  onDrain(): void {
    this.catchingUp?.pump();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const reader of this.readers) {
      reader.close();
      this.deps.hub.leave(reader);
    }
    this.readers.length = 0;
    this.readersById = null;
    this.catchingUp?.close();
    this.catchingUp = null;
  }

  // ReaderOwner and CatchUpOwner: what readers and the catch-up ask of their connection.

  catchUp(reader: SessionReader): void {
    if (this.closed || (reader.state !== "behind" && reader.state !== "resuming")) return;
    this.catchingUp ??= new CatchUp(this, this.deps, this.options);
    this.catchingUp.add(reader);
  }

  readMayMiss(reader: SessionReader): void {
    this.catchingUp?.readMayMiss(reader);
  }

  catchUpIdle(catchUp: CatchUp): void {
    if (this.catchingUp === catchUp) this.catchingUp = null;
  }

  deliverLive(reader: SessionReader, events: readonly StoredEvent[]): void {
    this.deliver(reader, events, null);
  }

  /**
   * The session this reader was authorised for is gone, its id taken again: the client is told as of
   * any session that expired (`gap`, `oldest: null`) and the reader detached. It is not marked finished
   * in the cursor: a resume asks the policy again, of the session the id names then.
   */
  incarnationEnded(reader: SessionReader): void {
    if (this.closed || reader.state === "closed") return;
    const requested = reader.position;
    const name = isLifecycleFeed(reader.sessionId) ? LIFECYCLE_FEED : reader.sessionId;
    this.deps.writer.send(plainFrame(this.eventName(name, "gap"), { requested, oldest: null }));
    this.closeReader(reader);
    this.closeIfAllEnded();
  }

  deliverCaughtUp(reader: SessionReader, events: readonly StoredEvent[], gap: ReadResult["gap"]): void {
    this.deliver(reader, events, gap);
  }

  private deliver(reader: SessionReader, events: readonly StoredEvent[], gap: ReadResult["gap"]): void {
    if (this.closed || reader.state === "closed") return;
    const { writer, tracker, metrics } = this.deps;
    // An owner's lifecycle feed is read under the name the client asked for: `@sessions`.
    const isFeed = isLifecycleFeed(reader.sessionId);
    const name = isFeed ? LIFECYCLE_FEED : reader.sessionId;
    if (gap) writer.send(plainFrame(this.eventName(name, "gap"), gap));
    let frames = "";
    let ended = false;
    for (const stored of events) {
      reader.position = stored.id;
      const event = reader.view ? reader.view(stored) : stored;
      if (event === null) {
        tracker?.setPosition(reader.index, stored.id);
        continue;
      }
      if (TERMINAL_TYPES.has(event.type) && !isFeed) ended = true;
      if (tracker) {
        if (ended) tracker.markFinished(reader.index);
        else tracker.setPosition(reader.index, event.id);
        frames += idLine(tracker.encode()) + muxBody(name, event);
      } else {
        frames += idLine(event.id) + singleBody(event);
      }
      if (ended) break;
    }
    if (frames === "") return;
    writer.send(frames);
    metrics.addDelivered(events.length);
    if (tracker && (this.batchesSent++ & 63) === 0) metrics.cursorBytes.observe(tracker.encode().length);
    if (ended) {
      // Finished: it stays among the readers (for allEnded, and so it is not added again).
      this.closeReader(reader);
      this.deps.tracker?.markFinished(reader.index);
      this.closeIfAllEnded();
    }
  }

  /** The reader is done: it leaves the hub, and its held read (if any) is dropped. */
  private closeReader(reader: SessionReader): void {
    reader.close();
    this.deps.hub.leave(reader);
    this.catchingUp?.forget(reader);
  }

  private closeIfAllEnded(): void {
    if (!this.acceptingClose || !this.options.closeWhenAllEnded || !this.allEnded()) return;
    this.close();
    this.deps.writer.end();
  }

  /** True when every session of the connection has ended (and none is still expected). */
  private allEnded(): boolean {
    for (const reader of this.readers) if (reader.state !== "closed") return false;
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
}

/** Whether a client at `position` already received the session's terminal event. */
export function hasReceivedEnd(info: SessionInfo | null, position: string | null): boolean {
  if (!info?.terminalId || position === null || !parsePosition(position)) return false;
  return comparePositions(position, info.terminalId) >= 0;
}
