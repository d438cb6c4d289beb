/**
 * Requests served in front of Express (streams, appends) hand their errors to Express before anything
 * was sent, so that its error handler writes the JSON and pino-http the log line, as for every route.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Express, RequestHandler } from "express";

const handedErrors = new WeakMap<IncomingMessage, { error: unknown }>();

/** Lets `app` answer `req` with `error` (`rethrowHandedErrors` passes it to the error handler). */
export function handOverError(app: Express, req: IncomingMessage, res: ServerResponse, error: unknown): void {
  handedErrors.set(req, { error });
  app(req, res);
}

/** Express middleware (after the request id, headers and CORS, before the body parser): a handed-over request goes straight to the error handler. */
export const rethrowHandedErrors: RequestHandler = (req, _res, next) => {
  const handed = handedErrors.get(req);
  if (!handed) return next();
  handedErrors.delete(req);
  next(handed.error);
};
