/** A hot route's request, built once by the front (front.ts): what its handler needs of it. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { Query } from "../auth/middleware.js";
import type { Principal } from "../auth/principal.js";
import type { RequestLog } from "./request-log.js";

export interface StreamRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly query: Query;
  readonly principal: Principal;
  /** The client's address (X-Forwarded-For from trusted proxies: client-ip.ts). */
  readonly ip: string | undefined;
  readonly logger: Logger;
  /** Response headers not set on `res` yet (request id, nosniff): sent with the head. */
  readonly headers: Readonly<Record<string, string>> | null;
  /** The request's access log lines. */
  readonly log: RequestLog | null;
}

/** Answers without a body (204: the client already has everything). */
export function endEmpty(stream: StreamRequest, status: number): void {
  if (stream.headers) stream.res.writeHead(status, stream.headers);
  else stream.res.writeHead(status);
  stream.res.end();
  stream.log?.finished();
}
