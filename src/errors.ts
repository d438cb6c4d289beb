/** One error type carrying status and code, and the one writer that turns errors into JSON answers. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { Logger } from "pino";
import { UnconfirmedAppendError } from "./store/replica-wait.js";

/**
 * Every error code the API answers, with its status: the one catalogue (docs/API.md's table follows it).
 * A code not listed here does not compile.
 */
export const ERROR_STATUS = {
  bad_request: 400,
  invalid_request: 400,
  invalid_json: 400,
  invalid_path: 400,
  invalid_session_id: 400,
  invalid_subscription_id: 400,
  invalid_cursor: 400,
  invalid_last_event_id: 400,
  invalid_idempotency_key: 400,
  event_after_terminal: 400,
  too_deep: 400,
  too_many_sessions: 400,
  unexpected_body: 400,
  missing_token: 401,
  invalid_token: 401,
  token_expired: 401,
  forbidden: 403,
  insufficient_scope: 403,
  not_found: 404,
  not_built: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  session_exists: 409,
  session_ended: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unsupported_encoding: 415,
  idempotency_key_reused: 422,
  headers_too_large: 431,
  too_many_runs: 429,
  too_many_active_runs: 429,
  too_many_connections: 429,
  too_many_events: 429,
  too_many_requests: 429,
  too_many_new_sessions: 429,
  internal: 500,
  unavailable: 503,
  draining: 503,
  auth_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  override readonly name = "AppError";
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.status = ERROR_STATUS[code];
  }
}

export const errors = {
  badRequest: (code: ErrorCode, message: string) => new AppError(code, message),
  notFound: (message: string) => new AppError("not_found", message),
  methodNotAllowed: (allowed: string[]) =>
    new AppError("method_not_allowed", `use ${allowed.join(" or ")}`, { Allow: allowed.join(", ") }),
  conflict: (code: ErrorCode, message: string) => new AppError(code, message),
  tooLarge: (message: string) => new AppError("payload_too_large", message),
  unavailable: (message = "the store (Redis) is unreachable; try again shortly") =>
    new AppError("unavailable", message, { "Retry-After": "1" }),
  draining: () =>
    new AppError("draining", "this instance is shutting down; retry on another", { "Retry-After": "1" }),
};

export function errorBody(code: ErrorCode, message: string) {
  return { error: { code, message } };
}

/** A store outage or a drain: expected, answered `503` with `Retry-After`, logged at warn without a stack. */
export function isExpectedOutage(error: AppError): boolean {
  return error.status === 503 && (error.code === "unavailable" || error.code === "draining");
}

/**
 * What the log says of an error outside a request's own answer (a stream that failed after it opened,
 * a retried read, a run): an expected outage as its code and message, without a stack; anything else
 * as is, with its stack.
 */
export function loggedError(error: unknown, storeReady: () => boolean): unknown {
  const appError = toAppError(error, storeReady);
  if (!isExpectedOutage(appError)) return error;
  return { code: appError.code, message: error instanceof Error ? error.message : appError.message };
}

/** What a failed request's access log line says of an expected failure (code and message, no stack). */
export interface FailureNote {
  code: string;
  message: string;
}

export function failureNoteOf(res: ServerResponse): FailureNote | undefined {
  return (res as { failure?: FailureNote }).failure;
}

/** The one error writer, for Express's routes and the hot routes alike. */
export interface ErrorWriter {
  /**
   * Answers `{error:{code,message}}` with the error's status and headers (and `headers`, not yet sent),
   * never a stack. A stream whose head is out is ended instead (its client resumes by id). An
   * unexpected error is logged with its stack; an expected outage (a drain, an unreachable store) only
   * in the request's access log line, at warn.
   */
  send(res: ServerResponse, error: unknown, headers?: Readonly<Record<string, string>>): void;
}

/** `storeReady`: the backend's own readiness tells an outage from a fault (not the error's text). */
export function createErrorWriter(logger: Logger, storeReady: () => boolean): ErrorWriter {
  return {
    send(res, error, headers = {}) {
      if (res.headersSent) {
        logStreamFailure(logger, res, error, storeReady, headers);
        res.end();
        return;
      }
      const appError = toAppError(error, storeReady);
      const expected = isExpectedOutage(appError);
      const note: FailureNote = { code: appError.code, message: appError.message };
      // Logged whether or not the body was read: an outage once, in the access log line; a fault here.
      if (expected) (res as { failure?: FailureNote }).failure = note;
      else if (appError.status >= 500) logger.error({ err: error }, "request failed");
      // Refused before its body has all come (the token is checked first): the connection closes after
      // the answer (Connection: close), rather than wait for a body nobody reads and time out on it.
      if (hasUnreadBody(res.req)) res.shouldKeepAlive = false;
      const body = JSON.stringify(errorBody(appError.code, appError.message));
      res.writeHead(appError.status, {
        ...headers,
        ...appError.headers,
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(body),
      });
      res.end(body);
    },
  };
}

/**
 * A stream whose head is out failed: logged once at warn (an AppError was the stream's own answer,
 * already told; an expected outage without its stack).
 */
export function logStreamFailure(
  logger: Logger,
  res: ServerResponse,
  error: unknown,
  storeReady: () => boolean,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (error instanceof AppError) return;
  const requestId = headers["X-Request-Id"] ?? res.getHeader("X-Request-Id");
  logger.warn(
    { err: loggedError(error, storeReady), req: { id: requestId } },
    "stream failed after it opened",
  );
}

function hasUnreadBody(req: IncomingMessage | undefined): boolean {
  if (!req || req.complete) return false;
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

export function createErrorHandler(writer: ErrorWriter): ErrorRequestHandler {
  return (error: unknown, _req, res, _next) => writer.send(res, error);
}

export function toAppError(error: unknown, storeReady: () => boolean = () => true): AppError {
  if (error instanceof AppError) return error;
  // REDIS_WAIT_REPLICAS: stored on the primary, not confirmed by the replicas, so not acknowledged.
  if (error instanceof UnconfirmedAppendError) return errors.unavailable(error.message);
  const candidate = error as { type?: string; status?: number; expose?: boolean } | null;
  switch (candidate?.type) {
    case "entity.too.large":
      return errors.tooLarge("the request body is larger than the configured limit (MAX_BODY_BYTES)");
    case "entity.parse.failed":
      return errors.badRequest("invalid_json", "the request body is not valid JSON");
    case "encoding.unsupported":
    case "charset.unsupported":
      return new AppError("unsupported_encoding", "send the body as UTF-8 JSON");
  }
  // The router's URIError for a path parameter that is not valid percent-encoding (`/sessions/%zz`).
  if (error instanceof URIError)
    return errors.badRequest("invalid_path", "the request path is not valid percent-encoding");
  if (candidate?.expose && typeof candidate.status === "number" && candidate.status < 500) {
    return new AppError("bad_request", "the request could not be read");
  }
  // A failure while the store is not ready (unreachable, or refusing the configured credentials) is
  // the outage, not a fault of this request.
  if (!storeReady()) return errors.unavailable();
  return new AppError("internal", "internal error");
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(errors.notFound(`no route for ${req.method} ${req.path}`));
};
