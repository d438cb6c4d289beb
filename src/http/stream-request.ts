/**
 * A request for an SSE stream as the stream routes see it, whichever way it came in: through Express
 * (`fromExpress`), or through the plain front handler (`stream-front.ts`), which keeps an open stream
 * free of Express's per-request state.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Request, Response } from "express";
import type { Logger } from "pino";
import { principalOf, type Query } from "../auth/middleware.js";
import type { Principal } from "../auth/principal.js";
import type { AppContext } from "./context.js";
import type { RequestLog } from "./request-log.js";

export interface StreamRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly query: Query;
  readonly principal: Principal;
  /** The client's address (X-Forwarded-For from trusted proxies, as Express's `req.ip`). */
  readonly ip: string | undefined;
  readonly logger: Logger;
  /** Response headers not set on `res` yet (request id, nosniff, CORS): sent with the head. */
  readonly headers: Readonly<Record<string, string>> | null;
  /** Open and close log lines, when no per-request logger (pino-http) writes them. */
  readonly log: RequestLog | null;
}

export function fromExpress(context: AppContext, req: Request, res: Response): StreamRequest {
  return {
    req,
    res,
    query: req.query,
    principal: principalOf(res),
    ip: req.ip,
    logger: req.log ?? context.logger,
    headers: null,
    log: null,
  };
}

/** Answers without a body (204: the client already has everything). */
export function endEmpty(stream: StreamRequest, status: number): void {
  if (stream.headers) stream.res.writeHead(status, stream.headers);
  else stream.res.writeHead(status);
  stream.res.end();
  stream.log?.finished();
}
