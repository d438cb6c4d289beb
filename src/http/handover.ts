/**
 * Requests served in front of Express (streams, appends) hand their errors to Express before anything
 * was sent, so that its error handler writes the JSON and pino-http the log line, as for every route.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Express, RequestHandler } from "express";
import type { Logger } from "pino";
import { AppError, isExpectedOutage, toAppError } from "../errors.js";
import { serializeRequest } from "./request-log.js";

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

/**
 * A request served in front of Express failed. Before anything was sent, Express answers it (its JSON
 * error and log line); a stream whose head is out is ended instead, and its client resumes by id.
 */
export function answerFailure(
  app: Express,
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  error: unknown,
): void {
  if (!res.headersSent) {
    handOverError(app, req, res, error);
    return;
  }
  if (!(error instanceof AppError)) {
    const known = toAppError(error);
    // An outage is expected: its code and message say enough; a stack is for the unexpected.
    const err = isExpectedOutage(known) ? { code: known.code, message: known.message } : error;
    logger.warn({ err, req: serializeRequest(req, requestId) }, "stream failed after it opened");
  }
  res.end();
}
