/** One error type carrying status and code, and the one writer that turns errors into JSON answers. */
import type { ServerResponse } from "node:http";
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { Logger } from "pino";

export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const errors = {
  badRequest: (code: string, message: string) => new AppError(400, code, message),
  notFound: (message: string) => new AppError(404, "not_found", message),
  methodNotAllowed: (allowed: string[]) =>
    new AppError(405, "method_not_allowed", `use ${allowed.join(" or ")}`, { Allow: allowed.join(", ") }),
  conflict: (code: string, message: string) => new AppError(409, code, message),
  tooLarge: (message: string) => new AppError(413, "payload_too_large", message),
  unavailable: (message = "the store (Redis) is unreachable; try again shortly") =>
    new AppError(503, "unavailable", message, { "Retry-After": "1" }),
  draining: () =>
    new AppError(503, "draining", "this instance is shutting down; retry on another", { "Retry-After": "1" }),
};

export function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

/** A store outage or a drain: expected, answered `503` with `Retry-After`, logged at warn without a stack. */
export function isExpectedOutage(error: AppError): boolean {
  return error.status === 503 && (error.code === "unavailable" || error.code === "draining");
}

/** What a failed request's access log line says of an expected failure (code and message, no stack). */
export interface FailureNote {
  code: string;
  message: string;
}

export function failureNoteOf(res: ServerResponse): FailureNote | undefined {
  return (res as { failure?: FailureNote }).failure;
}

/**
 * The one error writer, for Express's routes and the hot routes alike: `{error:{code,message}}` with the
 * error's status and headers (and `headers`, not yet sent), never a stack. A stream whose head is out is
 * ended instead (its client resumes by id). An unexpected error is logged with its stack; an expected
 * outage (a drain, an unreachable store) only in the request's access log line, at warn.
 */
export function sendError(
  res: ServerResponse,
  error: unknown,
  logger: Logger,
  headers: Readonly<Record<string, string>> = {},
): void {
  const appError = toAppError(error);
  const expected = isExpectedOutage(appError);
  const note: FailureNote = { code: appError.code, message: appError.message };
  if (res.headersSent) {
    if (!(error instanceof AppError)) {
      const requestId = headers["X-Request-Id"] ?? res.getHeader("X-Request-Id");
      logger.warn({ err: expected ? note : error, req: { id: requestId } }, "stream failed after it opened");
    }
    res.end();
    return;
  }
  if (expected) (res as { failure?: FailureNote }).failure = note;
  else if (appError.status >= 500) logger.error({ err: error }, "request failed");
  const body = JSON.stringify(errorBody(appError.code, appError.message));
  res.writeHead(appError.status, {
    ...headers,
    ...appError.headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

export function createErrorHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, _req, res, _next) => sendError(res, error, logger);
}

export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const candidate = error as { type?: string; status?: number; expose?: boolean } | null;
  switch (candidate?.type) {
    case "entity.too.large":
      return errors.tooLarge("the request body is larger than the configured limit (MAX_BODY_BYTES)");
    case "entity.parse.failed":
      return errors.badRequest("invalid_json", "the request body is not valid JSON");
    case "encoding.unsupported":
    case "charset.unsupported":
      return new AppError(415, "unsupported_encoding", "send the body as UTF-8 JSON");
  }
  // The router's URIError for a path parameter that is not valid percent-encoding (`/sessions/%zz`).
  if (error instanceof URIError)
    return errors.badRequest("invalid_path", "the request path is not valid percent-encoding");
  if (candidate?.expose && typeof candidate.status === "number" && candidate.status < 500) {
    return new AppError(candidate.status, "bad_request", "the request could not be read");
  }
  if (isStoreDown(error)) return errors.unavailable();
  return new AppError(500, "internal", "internal error");
}

function isStoreDown(error: unknown): boolean {
  const message = error instanceof Error ? error.message : "";
  // WRONGPASS/NOAUTH: Redis refuses the configured credentials, which is as unusable as unreachable.
  return /Connection is closed|ECONNREFUSED|Stream isn't writeable|max retries|WRONGPASS|NOAUTH/i.test(
    message,
  );
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(errors.notFound(`no route for ${req.method} ${req.path}`));
};
