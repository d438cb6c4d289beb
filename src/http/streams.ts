/** Opening an SSE response and wiring it to a StreamConnection: shared by every streaming endpoint. */
import type { Request, Response } from "express";
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
        streams.delete(writer);
        metrics.openConnections.dec({ kind: options.kind });
      },
      onFull: () => metrics.slowClientCatchUps.inc(),
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
