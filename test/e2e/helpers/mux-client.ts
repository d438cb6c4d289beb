/**
 * A resilient multiplexed reader, like a browser's EventSource on `GET /api/v1/stream?sessions=...`:
 * when its stream ends (an instance died, drained, or the proxy dropped it) before every session has
 * ended, it reconnects (here: through nginx, so to whichever instance) with the last cursor it received
 * as `Last-Event-ID`. It records each session's events as received, for exactly-once checks.
 */
import { decodeCursor } from "../../../src/mux/cursor.js";
import { openSse, type SseConnection } from "../../helpers/index.js";

const TERMINAL_TYPES = new Set(["done", "error", "cancelled"]);
const RECONNECT_MIN_MS = 100;
const RECONNECT_JITTER_MS = 200;

export interface ReceivedEvent {
  type: string;
  /** Parsed `data` (the raw text when it is not JSON). */
  data: unknown;
  /**
   * The session's position as the connection's cursor (`id:`) of this event says, for diagnostics
   * (undefined for events without an id, and for a terminal event, which the cursor marks finished).
   */
  position?: string;
}

export interface ConnectionRecord {
  status: number;
  events: number;
  /** Why it ended, when the socket failed rather than ended cleanly. */
  error?: string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class ResilientMuxClient {
  /** Every event received per session, in order of arrival (`unknown`/`gap` included, as seen). */
  readonly received = new Map<string, ReceivedEvent[]>();
  readonly ended = new Set<string>();
  readonly connections: ConnectionRecord[] = [];
  /** Requests that failed before a response (connection refused, reset). */
  readonly openFailures: string[] = [];
  /** Events that named no session of this client, or came after a session's terminal event. */
  readonly anomalies: string[] = [];
  private cursor: string | undefined;
  private current: SseConnection | undefined;
  private processed = 0;
  private stopped = false;

  constructor(
    readonly name: string,
    private readonly baseUrl: string,
    readonly sessions: readonly string[],
  ) {
    for (const id of sessions) this.received.set(id, []);
  }

  get url(): string {
    return `${this.baseUrl}/api/v1/stream?sessions=${this.sessions.join(",")}`;
  }

  /** Session events received so far (all sessions). */
  eventCount(): number {
    this.sync();
    let count = 0;
    for (const list of this.received.values()) count += list.length;
    return count;
  }

  /** Events received so far for one session. */
  eventsOf(id: string): ReceivedEvent[] {
    this.sync();
    return this.received.get(id) ?? [];
  }

  allEnded(): boolean {
    this.sync();
    return this.ended.size === this.sessions.length;
  }

  /** Reads (reconnecting as needed) until every session has ended; rejects after `timeoutMs`. */
  async run(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.allEnded()) {
      if (this.stopped) throw new Error(`${this.name}: stopped`);
      if (Date.now() >= deadline)
        throw new Error(`${this.name}: not finished within ${timeoutMs} ms: ${this.describe()}`);
      let conn: SseConnection;
      try {
        conn = await openSse(this.url, this.cursor === undefined ? {} : { lastEventId: this.cursor });
      } catch (error) {
        this.openFailures.push((error as Error).message);
        await sleep(RECONNECT_MIN_MS + Math.random() * RECONNECT_JITTER_MS);
        continue;
      }
      this.current = conn;
      this.processed = 0;
      const record: ConnectionRecord = { status: conn.status, events: 0 };
      this.connections.push(record);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), Math.max(0, deadline - Date.now()));
      });
      const expired = await Promise.race([conn.closed.then(() => false), timedOut]);
      clearTimeout(timer);
      if (expired) conn.close();
      this.sync();
      this.current = undefined;
      record.events = conn.events.length;
      const error = conn.error();
      if (error) record.error = error.message;
      if (conn.status === 204) {
        // The server says every session is over: fine only if we saw every end.
        if (!this.allEnded())
          throw new Error(`${this.name}: 204 on resume before every session ended: ${this.describe()}`);
        break;
      }
      if (conn.status !== 200 && conn.status !== 502 && conn.status !== 503 && conn.status !== 504) {
        throw new Error(`${this.name}: unexpected status ${conn.status}: ${conn.raw().slice(0, 300)}`);
      }
      if (!this.allEnded()) await sleep(RECONNECT_MIN_MS + Math.random() * RECONNECT_JITTER_MS);
    }
  }

  close(): void {
    this.stopped = true;
    this.current?.close();
  }

  /** Connections beyond the first: how often this client had to resume. */
  get reconnects(): number {
    return Math.max(0, this.connections.length - 1);
  }

  describe(): string {
    const missing = this.sessions.filter((id) => !this.ended.has(id));
    const counts = this.sessions.map((id) => `${id}=${this.received.get(id)?.length ?? 0}`).join(" ");
    return (
      `${this.connections.length} connections (statuses ${this.connections.map((c) => c.status).join(",")}), ` +
      `${this.openFailures.length} failed opens; not ended: [${missing.join(",")}]; events: ${counts}` +
      (this.anomalies.length > 0 ? `; anomalies: ${this.anomalies.slice(0, 5).join(" | ")}` : "")
    );
  }

  private positionIn(cursor: string, id: string): string | undefined {
    try {
      const limits = { maxIndex: this.sessions.length, maxEntries: this.sessions.length, maxLength: 1 << 20 };
      return decodeCursor(cursor, limits).positions.get(this.sessions.indexOf(id));
    } catch {
      return undefined;
    }
  }

  /** Moves newly dispatched events of the current connection into the per-session record. */
  private sync(): void {
    const conn = this.current;
    if (!conn) return;
    const events = conn.events;
    for (; this.processed < events.length; this.processed++) {
      const event = events[this.processed]!;
      if (event.id !== undefined) this.cursor = event.id;
      const colon = event.event.indexOf(":");
      if (colon === -1) continue; // connection-level: connected, subscribed
      const id = event.event.slice(0, colon);
      const type = event.event.slice(colon + 1);
      const list = this.received.get(id);
      if (!list) {
        this.anomalies.push(`event for a session not asked for: ${event.event}`);
        continue;
      }
      if (this.ended.has(id)) this.anomalies.push(`${event.event} after the session's terminal event`);
      const received: ReceivedEvent = { type, data: parseData(event.data) };
      const position = event.id === undefined ? undefined : this.positionIn(event.id, id);
      if (position !== undefined) received.position = position;
      list.push(received);
      if (TERMINAL_TYPES.has(type)) this.ended.add(id);
    }
  }
}
