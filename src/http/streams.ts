/** Opening an SSE response and wiring it to a StreamConnection: shared by every streaming endpoint. */
import { randomBytes } from "node:crypto";
import type { Request, Response } from "express";
import { principalOf } from "../auth/middleware.js";
import { AppError } from "../errors.js";
import type { CursorTracker } from "../mux/cursor.js";
import { StreamConnection } from "../mux/stream-connection.js";
import { SseWriter } from "../sse/writer.js";
import type { AppContext } from "./context.js";

export interface OpenStreamOptions {
  kind: "session" | "multiplexed" | "agent";
  framing: "single" | "mux";
  closeWhenAllEnded: boolean;
  tracker: CursorTracker | null;
  headers?: Record<string, string>;
  admission: Admission;
}

/** A place among the connections allowed per subject and per IP, held while the stream is open. */
export interface Admission {
  connectionId: string;
  refresh(): Promise<void>;
  release(): Promise<void>;
}

const CONNECTION_PLACE_TTL_MS = 90_000;
const CONNECTION_PLACE_REFRESH_MS = 30_000;

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

/** Takes the stream's places in the per-subject and per-IP connection limits, or refuses with 429. */
export async function admitStream(context: AppContext, req: Request, res: Response): Promise<Admission> {
  const { limiter, config } = context;
  const connectionId = `c_${randomBytes(6).toString("base64url")}`;
  const subject = principalOf(res).subject;
  const places: Array<{ key: string; limit: number }> = [
    { key: `conn:ip:${req.ip ?? "unknown"}`, limit: config.limits.connectionsPerIp },
  ];
  if (subject !== null)
    places.push({ key: `conn:sub:${subject}`, limit: config.limits.connectionsPerSubject });
  const take = () =>
    Promise.all(
      places.map((place) => limiter.acquire(place.key, connectionId, place.limit, CONNECTION_PLACE_TTL_MS)),
    );
  const release = async () => {
    await Promise.all(places.map((place) => limiter.release(place.key, connectionId)));
  };
  const taken = await take();
  if (taken.includes(false)) {
    await release();
    throw new AppError(
      429,
      "too_many_connections",
      "too many open streams for this client; close one or retry later",
      {
        "Retry-After": "5",
      },
    );
  }
  return {
    connectionId,
    refresh: async () => {
      await take();
    },
    release,
  };
}

const MAX_CONCURRENT_READS_PER_CONNECTION = 4;
const RETRY_READ_AFTER_MS = 500;

export function openStream(
  context: AppContext,
  req: Request,
  res: Response,
  options: OpenStreamOptions,
): StreamConnection {
  const { config, metrics, hub, store, streams } = context;
  const logger = req.log ?? context.logger;
  let connection: StreamConnection | undefined;
  const writer = new SseWriter(
    res,
    {
      heartbeatMs: config.heartbeatMs,
      retryMs: config.retryMs,
      slowClientTimeoutMs: config.slowClientTimeoutMs,
      ...(options.headers ? { headers: options.headers } : {}),
    },
    {
      onDrain: () => connection?.onDrain(),
      onClose: () => {
        connection?.close();
        clearTimeout(expiry);
        dropAdmission(options.admission);
        streams.delete(writer);
        metrics.openConnections.dec({ kind: options.kind });
      },
      onFull: () => metrics.slowClientCatchUps.inc(),
      onWrite: () => metrics.addSocketWrite(),
      onSlowClient: () => {
        metrics.slowClientCloses.inc();
        logger.info("closed a client stuck longer than the slow-client timeout");
      },
    },
  );
  connection = new StreamConnection(
    { hub, store, writer, metrics, logger, tracker: options.tracker },
    {
      framing: options.framing,
      closeWhenAllEnded: options.closeWhenAllEnded,
      mergeTokensWhenBehind: config.mergeTokensWhenBehind,
      catchUpBatch: config.catchUpBatch,
      maxConcurrentReads: MAX_CONCURRENT_READS_PER_CONNECTION,
      retryReadAfterMs: RETRY_READ_AFTER_MS,
    },
  );
  holdAdmission(options.admission);
  // A token that expires while the stream is open ends it; the client reconnects with a fresh one and
  // resumes by id. Not before the clock tolerance has passed too: until then the same token would be
  // accepted again, and a reconnect would get a stream that closes at once.
  const tokenExpiresAtMs = principalOf(res).expiresAtMs;
  const expiresAtMs =
    tokenExpiresAtMs === null ? null : tokenExpiresAtMs + config.auth.clockToleranceSeconds * 1000;
  const expiry =
    expiresAtMs === null
      ? undefined
      : setTimeout(() => writer.end(), Math.min(2 ** 31 - 1, Math.max(0, expiresAtMs - Date.now())));
  expiry?.unref();
  req.socket.setTimeout(0);
  writer.start();
  streams.add(writer);
  metrics.openConnections.inc({ kind: options.kind });
  return connection;
}

/** The client's resume point: the Last-Event-ID header, else the `lastEventId` query parameter. */
export function resumeId(req: Request): string | undefined {
  const header = req.get("last-event-id");
  if (header !== undefined && header !== "") return header;
  const query = req.query.lastEventId;
  return typeof query === "string" && query !== "" ? query : undefined;
}
