/**
 * Request ids and the one access log: a line when a request is over (and one when a stream opens),
 * written with the root logger (no child logger per request: an open stream keeps what it holds), for
 * Express's routes (`accessLog`) and the hot routes alike.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { unescape as unescapeQuery } from "node:querystring";
import type { RequestHandler } from "express";
import type { Logger } from "pino";
import { failureNoteOf } from "../errors.js";

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's `X-Request-Id` when it is a sane token, else a new UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  if (typeof given === "string" && REQUEST_ID_PATTERN.test(given)) return given;
  // randomUUID builds its string by concatenation: a rope of ~20 parts (~600 bytes) that an open
  // stream would keep. A copy through a Buffer is one flat 36-byte string.
  return Buffer.from(randomUUID(), "latin1").toString("latin1");
}

const TOKEN_PARAMETER = "access_token";

/**
 * Strips secrets that EventSource clients must put in the URL (`access_token`) before a URL is logged.
 * A parameter is judged by its name as the query parser decodes it (node:querystring, as the front and
 * Express read it), so `access%5Ftoken=` is redacted as surely as it is accepted; its value goes up to
 * the next `&`, fragment included (the parser keeps a raw `#` in the value too).
 */
export function redactUrl(url: string): string {
  const mark = url.indexOf("?");
  if (mark < 0) return url;
  const pairs = url.slice(mark + 1).split("&");
  let redacted = false;
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i]!;
    const equals = pair.indexOf("=");
    const name = equals < 0 ? pair : pair.slice(0, equals);
    if (equals >= 0 && parameterName(name) === TOKEN_PARAMETER) {
      pairs[i] = `${name}=[redacted]`;
      redacted = true;
    }
  }
  return redacted ? `${url.slice(0, mark + 1)}${pairs.join("&")}` : url;
}

/** A query parameter's name as node:querystring decodes it (`+` is a space), in lower case. */
function parameterName(raw: string): string {
  if (!raw.includes("%") && !raw.includes("+")) return raw.toLowerCase();
  return unescapeQuery(raw.replace(/\+/g, " ")).toLowerCase();
}

export function serializeRequest(req: IncomingMessage, id: unknown) {
  return {
    id,
    method: req.method,
    url: redactUrl(req.url ?? ""),
    remoteAddress: req.socket?.remoteAddress,
  };
}

/** Paths probed every few seconds by orchestrators and Prometheus: not logged. */
const QUIET_PATHS: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);

/** The access log lines of one request: `opened` for a stream, `finished` once it is over (once). */
export class RequestLog {
  private readonly startedAt = Date.now();
  private done = false;

  constructor(
    private readonly logger: Logger,
    readonly id: string,
    private readonly res: ServerResponse,
  ) {}

  opened(): void {
    this.logger.info({ req: serializeRequest(this.res.req, this.id) }, "stream opened");
  }

  /**
   * The response is over (ended, or the client went away). A server error is logged at error, an
   * expected outage (503) at warn with its code, everything else at info.
   */
  finished(): void {
    if (this.done) return;
    this.done = true;
    const { res } = this;
    const { req } = res;
    const statusCode = res.headersSent ? res.statusCode : null;
    const level = statusCode === 503 ? "warn" : statusCode !== null && statusCode >= 500 ? "error" : "info";
    const failure = failureNoteOf(res);
    this.logger[level](
      {
        req: serializeRequest(req, this.id),
        res: { statusCode },
        responseTime: Date.now() - this.startedAt,
        ...(failure ? { failure } : {}),
      },
      !req.readableAborted && res.writableEnded ? "request completed" : "request aborted",
    );
  }
}

/** Express's side of the access log: the request id (echoed as X-Request-Id) and the line when it is over. */
export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const id = requestIdOf(req);
    res.setHeader("X-Request-Id", id);
    if (!QUIET_PATHS.has(req.path)) {
      const log = new RequestLog(logger, id, res);
      res.once("close", () => log.finished());
    }
    next();
  };
}
