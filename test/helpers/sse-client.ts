/**
 * A test SSE client over node:http and eventsource-parser: it records everything as received (events,
 * comments, retry, raw text) and can pause its socket to play a slow reader. Plus small JSON helpers.
 */
import {
  type ClientRequest,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from "node:http";
import { createParser } from "eventsource-parser";

const DEFAULT_WAIT_MS = 5_000;
const LAST_EVENTS_IN_ERRORS = 5;

export interface SseEvent {
  id?: string;
  /** "message" when the server sent no `event:` field. */
  event: string;
  data: string;
}

export type EventMatcher = string | ((event: SseEvent) => boolean);

export interface SseConnection {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Every dispatched event, in order; the array grows as events arrive. */
  readonly events: SseEvent[];
  /** Comment lines without the leading ": " (e.g. "ping"). */
  readonly comments: string[];
  /** The last `retry:` value received. */
  readonly retry: number | undefined;
  /** Resolves when the predicate holds; rejects on timeout, or when the stream ends before it holds. */
  waitFor(predicate: (events: SseEvent[]) => boolean, timeoutMs?: number): Promise<void>;
  /** The first event received so far (or later) with this name, or matching the predicate. */
  waitForEvent(match: EventMatcher, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves when the response ends, whoever ended it (server end, client close, socket error). */
  readonly closed: Promise<void>;
  /** True once the response has ended. */
  isClosed(): boolean;
  /** Client-side abort (destroys the socket). */
  close(): void;
  /** Stops reading the socket, so the server's writes back up (a slow reader). */
  pause(): void;
  resume(): void;
  /** The last `id:` received on an event. */
  lastId(): string | undefined;
  /** The whole body as text so far (for framing checks, or the JSON body of a non-SSE response). */
  raw(): string;
  /** The socket error that ended the stream, if any. */
  error(): Error | undefined;
}

export interface OpenSseOptions {
  headers?: Record<string, string>;
  /** Sent as the `Last-Event-ID` header. */
  lastEventId?: string;
}

/** Rendered into timeout messages: counts and the last few events. */
function describe(events: SseEvent[], comments: string[], closed: boolean): string {
  const last = events
    .slice(-LAST_EVENTS_IN_ERRORS)
    .map((e) => `  ${e.id === undefined ? "" : `id=${e.id} `}${e.event}: ${e.data.slice(0, 200)}`)
    .join("\n");
  return (
    `${events.length} events, ${comments.length} comments, stream ${closed ? "closed" : "open"}` +
    (events.length > 0 ? `; last ${Math.min(events.length, LAST_EVENTS_IN_ERRORS)}:\n${last}` : "")
  );
}

const matcherOf = (match: EventMatcher) =>
  typeof match === "string" ? (e: SseEvent) => e.event === match : match;

/** Opens a stream; resolves once the response headers arrive (whatever the status). */
export function openSse(url: string, opts: OpenSseOptions = {}): Promise<SseConnection> {
  const headers: Record<string, string> = {
    accept: "text/event-stream",
    "cache-control": "no-cache",
    ...opts.headers,
  };
  if (opts.lastEventId !== undefined) headers["last-event-id"] = opts.lastEventId;

  return new Promise((resolveOpen, rejectOpen) => {
    // agent: false: one fresh socket per stream, never a pooled one that another test could reuse.
    const req: ClientRequest = httpRequest(url, { method: "GET", headers, agent: false });
    req.once("error", rejectOpen);
    req.once("response", (res: IncomingMessage) => {
      resolveOpen(attach(req, res));
    });
    req.end();
  });
}

function attach(req: ClientRequest, res: IncomingMessage): SseConnection {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const rawChunks: string[] = [];
  const waiters = new Set<() => void>();
  let retry: number | undefined;
  let lastId: string | undefined;
  let isClosed = false;
  let streamError: Error | undefined;
  let closedByClient = false;

  const notify = (): void => {
    for (const check of [...waiters]) check();
  };

  const parser = createParser({
    onEvent(message) {
      const event: SseEvent = { event: message.event ?? "message", data: message.data };
      if (message.id !== undefined) {
        event.id = message.id;
        lastId = message.id;
      }
      events.push(event);
      notify();
    },
    onComment(comment) {
      comments.push(comment);
      notify();
    },
    onRetry(ms) {
      retry = ms;
      notify();
    },
  });

  // Only an event stream is parsed; any other body (a JSON error, a 204) is kept in raw() only.
  const isEventStream = (res.headers["content-type"] ?? "").startsWith("text/event-stream");
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    rawChunks.push(chunk);
    if (isEventStream) parser.feed(chunk);
  });

  const closed = new Promise<void>((resolve) => {
    const done = (): void => {
      if (isClosed) return;
      isClosed = true;
      resolve();
      notify();
    };
    res.once("end", done);
    res.once("close", done);
    // An abort we asked for is not an error.
    res.once("error", (error) => {
      if (!closedByClient) streamError ??= error;
      done();
    });
    req.on("error", (error) => {
      if (!closedByClient) streamError ??= error;
      done();
    });
  });

  const waitFor = (predicate: (events: SseEvent[]) => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<void> =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const finish = (error?: Error): void => {
        waiters.delete(check);
        if (timer) clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      function check(): void {
        let ok: boolean;
        try {
          ok = predicate(events);
        } catch (error) {
          finish(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (ok) finish();
        else if (isClosed)
          finish(
            new Error(
              `SSE stream ended before the condition held, after ${Date.now() - started} ms ` +
                `(status ${res.statusCode}${streamError ? `, ${streamError.message}` : ""}): ` +
                describe(events, comments, true),
            ),
          );
      }
      waiters.add(check);
      timer = setTimeout(
        () =>
          finish(
            new Error(
              `SSE condition not met within ${timeoutMs} ms: ${describe(events, comments, isClosed)}`,
            ),
          ),
        timeoutMs,
      );
      check();
    });

  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    events,
    comments,
    get retry() {
      return retry;
    },
    waitFor,
    async waitForEvent(match, timeoutMs = DEFAULT_WAIT_MS) {
      const matches = matcherOf(match);
      let found: SseEvent | undefined;
      try {
        await waitFor((list) => {
          found = list.find(matches);
          return found !== undefined;
        }, timeoutMs);
      } catch (error) {
        const what = typeof match === "string" ? `event "${match}"` : "a matching event";
        throw new Error(`waiting for ${what}: ${(error as Error).message}`);
      }
      return found as SseEvent;
    },
    closed,
    isClosed: () => isClosed,
    close() {
      closedByClient = true;
      req.destroy();
      res.destroy();
    },
    pause() {
      res.pause();
      res.socket?.pause();
    },
    resume() {
      res.socket?.resume();
      res.resume();
    },
    lastId: () => lastId,
    raw: () => rawChunks.join(""),
    error: () => streamError,
  };
}

/** Opens a stream and waits until the server ends it (rejects after `timeoutMs`, closing the stream). */
export async function collectUntilClosed(
  url: string,
  opts: OpenSseOptions & { timeoutMs?: number } = {},
): Promise<SseConnection> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
  const conn = await openSse(url, opts);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      conn.close();
      reject(
        new Error(
          `SSE stream ${url} still open after ${timeoutMs} ms: ${describe(conn.events, conn.comments, false)}`,
        ),
      );
    }, timeoutMs);
  });
  try {
    await Promise.race([conn.closed, timeout]);
  } finally {
    clearTimeout(timer);
  }
  return conn;
}

// ---- JSON over fetch -----------------------------------------------------------------------------------

/** Parsed JSON bodies are loosely typed on purpose: tests assert on them with expect(). */
// biome-ignore lint/suspicious/noExplicitAny: test convenience, bodies are checked by assertions
export type JsonBody = any;

export interface JsonResponse {
  status: number;
  headers: Headers;
  /** The parsed JSON, the text if it is not JSON, or undefined if empty. */
  body: JsonBody;
  text: string;
}

export interface RequestOptions {
  /** Serialized as JSON, with `content-type: application/json`. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Sent as is (for malformed-JSON and size tests); takes precedence over `body`. */
  rawBody?: string;
}

export async function request(method: string, url: string, opts: RequestOptions = {}): Promise<JsonResponse> {
  const headers: Record<string, string> = { accept: "application/json", ...opts.headers };
  let payload: string | undefined;
  if (opts.rawBody !== undefined) {
    payload = opts.rawBody;
  } else if (opts.body !== undefined) {
    payload = JSON.stringify(opts.body);
  }
  if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) {
    headers["content-type"] = "application/json";
  }
  const res = await fetch(url, { method, headers, body: payload });
  const text = await res.text();
  let body: JsonBody;
  if (text !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  return { status: res.status, headers: res.headers, body, text };
}

export const postJson = (
  url: string,
  body: unknown,
  headers?: Record<string, string>,
): Promise<JsonResponse> => request("POST", url, { body, headers: headers ?? {} });

export const patchJson = (
  url: string,
  body: unknown,
  headers?: Record<string, string>,
): Promise<JsonResponse> => request("PATCH", url, { body, headers: headers ?? {} });

export const getJson = (url: string, headers?: Record<string, string>): Promise<JsonResponse> =>
  request("GET", url, { headers: headers ?? {} });

/** Resolves when the server ends the stream; rejects after `timeoutMs` saying what the stream last carried. */
export async function closedWithin(stream: SseConnection, timeoutMs = 15_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const last = stream.events
        .slice(-5)
        .map((event) => event.event)
        .join(", ");
      reject(
        new Error(
          `stream still open after ${timeoutMs} ms (${stream.events.length} events; last: ${last}): ${stream.raw().slice(-400)}`,
        ),
      );
    }, timeoutMs);
  });
  try {
    await Promise.race([stream.closed, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a reader of a run assembles: a `snapshot` replaces what it had (the session so far), tokens add. */
export function assembledText(events: readonly SseEvent[]): string {
  let text = "";
  for (const event of events) {
    if (event.event === "snapshot") text = (JSON.parse(event.data) as { content: string }).content;
    if (event.event === "token") text += (JSON.parse(event.data) as { content: string }).content;
  }
  return text;
}

/** A `POST /api/v1/agent/stream` of `body` on its own connection, not yet sent: `req.end(payload)` sends it. */
export function agentStreamRequest(url: string, body: unknown): { req: ClientRequest; payload: string } {
  const payload = JSON.stringify(body);
  const req = httpRequest(`${url}/api/v1/agent/stream`, {
    method: "POST",
    agent: false,
    headers: {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(payload),
      accept: "text/event-stream",
    },
  });
  return { req, payload };
}
