/**
 * Opening an SSE response and wiring it to a StreamConnection: shared by every streaming endpoint.
 * An open stream lives for hours, so what it keeps is kept small: one hooks object instead of a
 * closure per hook, option objects shared by every stream, places in the limits held by one object.
 */
import type { IncomingMessage } from "node:http";
import type { Logger } from "pino";
import type { Query } from "../auth/middleware.js";
import type { Config } from "../config.js";
import { type Admission, CONNECTION_PLACE_REFRESH_MS } from "../limits/admission.js";
import { settle } from "../limits/in-flight.js";
import type { CursorTracker } from "../mux/cursor.js";
import {
  StreamConnection,
  type StreamConnectionDeps,
  type StreamConnectionOptions,
} from "../mux/stream-connection.js";
import { type CloseReason, SseWriter, type SseWriterHooks, type SseWriterOptions } from "../sse/writer.js";
import type { AppContext } from "./context.js";
import type { RequestLog } from "./request-log.js";
import type { StreamRequest } from "./stream-request.js";

export interface OpenStreamOptions {
  kind: "session" | "multiplexed" | "agent";
  framing: "single" | "mux";
  closeWhenAllEnded: boolean;
  tracker: CursorTracker | null;
  headers?: Record<string, string>;
  admission: Admission;
}

/** Places of open streams, renewed together by one timer (an idle stream costs no timer of its own). */
const heldAdmissions = new Set<Admission>();
let admissionRefresher: NodeJS.Timeout | undefined;

function holdAdmission(admission: Admission): void {
  heldAdmissions.add(admission);
  if (admissionRefresher) return;
  admissionRefresher = setInterval(() => {
    for (const held of heldAdmissions) held.refresh().catch(() => {});
  }, CONNECTION_PLACE_REFRESH_MS);
  admissionRefresher.unref();
}

function dropAdmission(admission: Admission): void {
  heldAdmissions.delete(admission);
  admission.release().catch(() => {});
  if (heldAdmissions.size === 0 && admissionRefresher) {
    clearInterval(admissionRefresher);
    admissionRefresher = undefined;
  }
}

const MAX_CONCURRENT_READS_PER_CONNECTION = 4;
const RETRY_READ_AFTER_MS = 500;

/** Option objects shared by every stream of a config (each open stream keeps its own otherwise). */
const sharedOptions = new WeakMap<
  Readonly<Config>,
  { writer: SseWriterOptions; connection: Map<string, StreamConnectionOptions> }
>();

function optionsOf(config: Readonly<Config>, framing: "single" | "mux", closeWhenAllEnded: boolean) {
  let shared = sharedOptions.get(config);
  if (!shared) {
    shared = {
      writer: Object.freeze({
        heartbeatMs: config.heartbeatMs,
        retryMs: config.retryMs,
        slowClientTimeoutMs: config.slowClientTimeoutMs,
        maxBufferedBytes: config.slowClientMaxBufferedBytes,
      }),
      connection: new Map(),
    };
    sharedOptions.set(config, shared);
  }
  const key = `${framing}:${closeWhenAllEnded}`;
  let connection = shared.connection.get(key);
  if (!connection) {
    connection = Object.freeze({
      framing,
      closeWhenAllEnded,
      mergeTokensWhenBehind: config.mergeTokensWhenBehind,
      catchUpBatch: config.catchUpBatch,
      maxConcurrentReads: MAX_CONCURRENT_READS_PER_CONNECTION,
      retryReadAfterMs: RETRY_READ_AFTER_MS,
    });
    shared.connection.set(key, connection);
  }
  return { writer: shared.writer, connection };
}

/** What an open stream's writer tells its reading side: a StreamConnection, or a front door's reader. */
export interface StreamOwner {
  onDrain(): void;
  close(): void;
}

/** Builds the reading side of a stream over its writer (by default a StreamConnection). */
export type ConnectStream<C extends StreamOwner> = (
  deps: StreamConnectionDeps,
  options: StreamConnectionOptions,
) => C;

const connectStreamConnection: ConnectStream<StreamConnection> = (deps, options) =>
  new StreamConnection(deps, options);

/** The writer's hooks for one open stream, and what its end releases. */
class OpenStream implements SseWriterHooks {
  connection: StreamOwner | undefined;
  writer: SseWriter | undefined;
  expiry: NodeJS.Timeout | undefined;

  constructor(
    private readonly context: AppContext,
    private readonly kind: OpenStreamOptions["kind"],
    private readonly admission: Admission,
    private readonly logger: Logger,
    private readonly log: RequestLog | null,
  ) {}

  onDrain(): void {
    this.connection?.onDrain();
  }

  onClose(_reason: CloseReason): void {
    const { metrics, streams } = this.context;
    this.connection?.close();
    clearTimeout(this.expiry);
    dropAdmission(this.admission);
    if (this.writer) streams.delete(this.writer);
    metrics.openConnections.dec({ kind: this.kind });
    this.log?.finished();
  }

  onFull(): void {
    this.context.metrics.slowClientCatchUps.inc();
  }

  /** The writer took all it may while its socket is full: stop reading for it (held reads go too). */
  onOverflow(): void {
    this.connection?.close();
  }

  onWrite(): void {
    this.context.metrics.addSocketWrite();
  }

  onSlowClient(): void {
    this.context.metrics.slowClientCloses.inc();
    this.logger.info(
      this.log ? { req: { id: this.log.id } } : {},
      "closed a slow client (stuck past SLOW_CLIENT_TIMEOUT_MS, or sent SLOW_CLIENT_MAX_BUFFERED_BYTES it did not read)",
    );
  }
}

/** What opening a stream needs of its request. */
export type StreamTarget = Pick<StreamRequest, "req" | "res" | "principal" | "logger" | "headers" | "log">;

export function startStream(
  context: AppContext,
  target: StreamTarget,
  options: OpenStreamOptions,
): StreamConnection;
export function startStream<C extends StreamOwner>(
  context: AppContext,
  target: StreamTarget,
  options: OpenStreamOptions,
  connect: ConnectStream<C>,
): C;
export function startStream(
  context: AppContext,
  target: StreamTarget,
  options: OpenStreamOptions,
  connect: ConnectStream<StreamOwner> = connectStreamConnection,
): StreamOwner {
  const { config, metrics, hub, store, streams } = context;
  const shared = optionsOf(config, options.framing, options.closeWhenAllEnded);
  const hooks = new OpenStream(context, options.kind, options.admission, target.logger, target.log);
  const writer = new SseWriter(target.res, shared.writer, hooks);
  const connection = connect(
    { hub, store, writer, metrics, logger: target.logger, tracker: options.tracker },
    shared.connection,
  );
  hooks.writer = writer;
  hooks.connection = connection;
  holdAdmission(options.admission);
  // A token that expires while the stream is open ends it; the client reconnects with a fresh one and
  // resumes by id. Not before the clock tolerance has passed too: until then the same token would be
  // accepted again, and a reconnect would get a stream that closes at once.
  const tokenExpiresAtMs = target.principal.expiresAtMs;
  if (tokenExpiresAtMs !== null) {
    const expiresAtMs = tokenExpiresAtMs + config.auth.clockToleranceSeconds * 1000;
    hooks.expiry = setTimeout(
      () => writer.end(),
      Math.min(2 ** 31 - 1, Math.max(0, expiresAtMs - Date.now())),
    );
    hooks.expiry.unref();
  }
  target.req.socket.setTimeout(0);
  // An open stream is counted by the connection limits from now on, not as a request in flight.
  settle(target.res);
  streams.add(writer);
  metrics.openConnections.inc({ kind: options.kind });
  target.log?.opened();
  // Last: a client that is gone already closes the stream (and undoes the above) here.
  writer.start(
    target.headers && options.headers
      ? { ...target.headers, ...options.headers }
      : (options.headers ?? target.headers),
  );
  return connection;
}

/** The client's resume point: the Last-Event-ID header, else the `lastEventId` query parameter. */
export function resumeId(req: IncomingMessage, query: Query): string | undefined {
  const header = req.headers["last-event-id"];
  if (typeof header === "string" && header !== "") return header;
  const given = query.lastEventId;
  return typeof given === "string" && given !== "" ? given : undefined;
}
