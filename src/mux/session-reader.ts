/**
 * One session as read by one connection, and where it stands: one state, moved only by its connection
 * (stream-connection.ts, and its catch-up, catch-up.ts) through the named transitions below. The hub
 * only pushes batches to it (`push`, `resync`); what a push does depends on the state.
 *
 *   from              transition   to                   when
 *   resuming, behind  startRead    reading              the catch-up sends a read for it
 *   reading           caughtUp     live                 the read reached the end, and no batch came meanwhile
 *   reading           owesMore     behind               more to read, and no read ahead started for it
 *   reading           readFailed   resuming or behind   (as before the read) the catch-up retries later
 *   live              fallBehind   behind               a batch it does not follow, a full socket, a resync
 *   any               close        closed               its session ended, it was removed, its connection closed,
 *                                                        or a batch of another incarnation of its id came
 *
 * A transition asked of a state it does not leave from changes nothing (e.g. `caughtUp` after the batch
 * that was read ended the session, which closed the reader).
 */
import { continuesAt, MISSED, type Reader } from "../hub/reader.js";
import type { StoredEvent } from "../store/types.js";

export type ReaderState =
  /** Behind, at the client's resume point: its first read also checks for trimmed history (a `gap`). */
  | "resuming"
  /** Owed batches from the store: waiting in its connection's catch-up queue (or to retry a failed read). */
  | "behind"
  /** Its next batch is being read, or read ahead and held until its turn. */
  | "reading"
  /** Fed by what the hub pushes. */
  | "live"
  /** Its session ended, it was removed, or its connection closed: nothing more is delivered. */
  | "closed";

/**
 * What a client may see of an event: the event itself, the event with some of its data withheld (a new
 * object: the one given is shared by every reader), or null when it may not see it at all (skipped).
 */
export type EventView = (event: StoredEvent) => StoredEvent | null;

/** What a reader needs of its connection. */
export interface ReaderOwner {
  /** The socket takes live events now. */
  canTakeLive(): boolean;
  /** Writes events the reader takes live: in order, right after its position. */
  deliverLive(reader: SessionReader, events: readonly StoredEvent[]): void;
  /**
   * A batch of another incarnation of the reader's id came (its session expired and the id was created
   * again): the reader must receive none of it. The owner says so to its client and closes the reader.
   */
  incarnationEnded(reader: SessionReader): void;
  /** The reader fell behind: catch it up from the store. */
  catchUp(reader: SessionReader): void;
  /** A batch was appended while the reader's read was pending: that read may not include it. */
  readMayMiss(reader: SessionReader): void;
}

/**
 * A reader lives as long as its connection, one per session, so it keeps six fields: its state is one
 * of them (an interned string, as small as a flag word), and what the catch-up needs per read (where
 * it started, whether it checks for a gap, whether a notice came meanwhile) lives on the read.
 */
export class SessionReader implements Reader {
  /** Position of the last event handed to the client; null until it has one (start from the beginning). */
  position: string | null;
  private current: ReaderState;

  constructor(
    readonly sessionId: string,
    /** The session's index on the connection (its place in the cursor). */
    readonly index: number,
    start: string | null,
    private readonly owner: ReaderOwner,
    /** What this client may see of each event (the lifecycle feed, for a reader who is not admin). */
    readonly view: EventView | null,
    /** True only for a session this request creates: it has no events yet, so nothing to read first. */
    live = false,
    /**
     * The incarnation (creation stamp) the client was authorised for, whose events alone it may receive;
     * null when its authorisation holds for the id, whoever creates it (admin, a claim: policy.ts).
     */
    readonly incarnation: number | null = null,
  ) {
    this.position = start;
    this.current = live ? "live" : start === null ? "behind" : "resuming";
  }

  get state(): ReaderState {
    return this.current;
  }

  push(prevId: string, events: readonly StoredEvent[], createdAt: number | null = null): boolean {
    if (this.current === "closed") return false;
    if (this.incarnation !== null && createdAt !== this.incarnation) {
      // Another incarnation: never delivered. Not known (a notice from an older instance): the store says.
      if (createdAt !== null) this.owner.incarnationEnded(this);
      else this.resync();
      return false;
    }
    if (this.current === "live") {
      const owner = this.owner;
      if (owner.canTakeLive()) {
        const from = continuesAt(this.position, prevId, events);
        if (from === 0) {
          owner.deliverLive(this, events);
          return true;
        }
        if (from !== MISSED) {
          // Already has part of the batch (read from the store, or handed over locally): only the rest.
          if (from < events.length) owner.deliverLive(this, events.slice(from));
          return false;
        }
      }
      this.fallBehind();
    } else if (this.current === "reading") {
      this.owner.readMayMiss(this);
    }
    // behind or resuming: its next read starts after this append, so includes it; closed: nothing.
    return false;
  }

  resync(): void {
    if (this.current === "live") this.fallBehind();
    else if (this.current === "reading") this.owner.readMayMiss(this);
  }

  /** live → behind, and its connection catches it up. */
  fallBehind(): void {
    if (this.current !== "live") return;
    this.current = "behind";
    this.owner.catchUp(this);
  }

  /**
   * resuming | behind → reading, as the catch-up sends a read. Returns whether this read is the first
   * from the client's resume point (it checks for trimmed history); false when nothing changed.
   */
  startRead(): boolean {
    const resuming = this.current === "resuming";
    if (resuming || this.current === "behind") this.current = "reading";
    return resuming;
  }

  /** reading → live: the last read reached the end of the session, and no batch came meanwhile. */
  caughtUp(): void {
    if (this.current === "reading") this.current = "live";
  }

  /** reading → behind: more to read, and no read ahead started for it (its connection holds enough). */
  owesMore(): void {
    if (this.current === "reading") this.current = "behind";
  }

  /** reading → resuming | behind: the read failed; the catch-up retries it later. */
  readFailed(wasFirst: boolean): void {
    if (this.current === "reading") this.current = wasFirst ? "resuming" : "behind";
  }

  /** any → closed. */
  close(): void {
    this.current = "closed";
  }
}
