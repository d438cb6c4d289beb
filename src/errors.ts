/** One error type carrying status and code, and the one Express handler that turns errors into JSON. */
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

/** Maps body-parser's and our own errors to `{error:{code,message}}`; never leaks a stack. */
export function createErrorHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, _req, res, _next) => {
    const appError = toAppError(error);
    if (isExpectedOutage(appError)) {
      // What pino-http logs with the request's line (instead of an Error with a stack).
      (res as { err?: unknown }).err = { code: appError.code, message: appError.message };
    } else if (appError.status >= 500) {
      logger.error({ err: error }, "request failed");
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(appError.status).set(appError.headers).json(errorBody(appError.code, appError.message));
  };
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
