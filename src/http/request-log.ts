/**
 * Request ids and request log lines, shared by pino-http (every Express route) and the stream front
 * handler (which logs with the root logger instead of a child per request).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's `X-Request-Id` when it is a sane token, else a new UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  if (typeof given === "string" && REQUEST_ID_PATTERN.test(given)) return given;
  // randomUUID builds its string by concatenation: a rope of ~20 parts (~600 bytes) that an open
  // stream would keep. A copy through a Buffer is one flat 36-byte string.
  return Buffer.from(randomUUID(), "latin1").toString("latin1");
}

/** Strips secrets that EventSource clients must put in the URL (`access_token`) before a URL is logged. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]access_token=)[^&#]*/gi, "$1[redacted]");
}

export function serializeRequest(req: IncomingMessage, id: unknown) {
  return {
    id,
    method: req.method,
    url: redactUrl(req.url ?? ""),
    remoteAddress: req.socket?.remoteAddress,
  };
}

/**
 * The log lines of one stream served outside Express: one when it opens, one when it is over, with
 * the fields and messages pino-http writes for every other request.
 */
export class RequestLog {
  private readonly startedAt = Date.now();

  constructor(
    private readonly logger: Logger,
    readonly id: string,
    private readonly res: ServerResponse,
  ) {}

  opened(): void {
    this.logger.info({ req: serializeRequest(this.res.req, this.id) }, "stream opened");
  }

  /** The response is over (ended, or the client went away). */
  finished(): void {
    const { res } = this;
    const { req } = res;
    this.logger.info(
      {
        req: serializeRequest(req, this.id),
        res: { statusCode: res.headersSent ? res.statusCode : null },
        responseTime: Date.now() - this.startedAt,
      },
      !req.readableAborted && res.writableEnded ? "request completed" : "request aborted",
    );
  }
}
