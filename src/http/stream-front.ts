/**
 * The long-lived stream routes (GET and HEAD of /api/v1/stream and /api/v1/sessions/:id/stream),
 * served by a plain `http` request handler in front of Express. An open stream keeps its request and
 * response for its lifetime: under Express each of the two would be re-parented (Object.setPrototypeOf
 * gives each object a hidden class of its own, about 1 KB) and carry a pino-http child logger and
 * Express's request state. Here the stream is logged once when it opens and once when it ends, with
 * the root logger and the same fields.
 *
 * Only the exact form of a stream request is taken here; anything else (a request body, a trailing
 * slash, other letter case, percent-encoding) goes to Express, whose routes run the same handlers.
 * An error before the head is sent is handed to Express too, so its JSON, headers and log line are the
 * ones every other route produces.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { parse as parseQuery } from "node:querystring";
import type { Express } from "express";
import { authenticate } from "../auth/middleware.js";
import { clientIpResolver } from "./client-ip.js";
import type { AppContext } from "./context.js";
import { type CorsHandler, collectCorsHeaders } from "./cors.js";
import { answerFailure } from "./handover.js";
import { serveMultiplexedStream } from "./multiplex.js";
import { RequestLog, requestIdOf } from "./request-log.js";
import { serveSessionStream } from "./session-stream.js";
import type { StreamRequest } from "./stream-request.js";

type StreamRoute = { kind: "multiplexed" } | { kind: "session"; id: string };

const MULTIPLEXED: StreamRoute = Object.freeze({ kind: "multiplexed" });
const SESSION_STREAM_PATH = /^\/api\/v1\/sessions\/([A-Za-z0-9_-]{1,64})\/stream$/;
/** Characters that make Express's URL parser (parseurl) leave its fast path: such URLs go to Express. */
const UNUSUAL_URL_CHARACTER = /[\t\n\f\r #\u00a0\ufeff]/;

/** The stream route this request names exactly, with its query string; null for anything else. */
export function matchStreamRoute(req: IncomingMessage): { route: StreamRoute; query: string } | null {
  if (req.method !== "GET" && req.method !== "HEAD") return null;
  // A body, even an empty one, is for Express's JSON parser to accept or refuse.
  if (req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined) {
    return null;
  }
  const url = req.url ?? "";
  if (!url.startsWith("/api/v1/") || UNUSUAL_URL_CHARACTER.test(url)) return null;
  const mark = url.indexOf("?");
  const path = mark < 0 ? url : url.slice(0, mark);
  const query = mark < 0 ? "" : url.slice(mark + 1);
  if (path === "/api/v1/stream") return { route: MULTIPLEXED, query };
  const session = SESSION_STREAM_PATH.exec(path);
  return session ? { route: { kind: "session", id: session[1]! }, query } : null;
}

/** The server's request listener: stream requests here, the rest to `app`. */
export function createStreamFront(
  context: AppContext,
  app: Express,
  cors: CorsHandler | null,
): RequestListener {
  const { config, logger, verifier } = context;
  const clientIp = clientIpResolver(app);

  const serve = async (
    route: StreamRoute,
    queryText: string,
    id: string,
    req: IncomingMessage,
    res: ServerResponse,
  ) => {
    const query = parseQuery(queryText);
    // The headers Express would have set by now: X-Request-Id (pino-http), nosniff, CORS.
    const headers: Record<string, string> = { "X-Request-Id": id, "X-Content-Type-Options": "nosniff" };
    if (cors) await collectCorsHeaders(cors, req, headers);
    const principal = await authenticate(verifier, config.auth.cookieName, req.headers, query);
    const stream: StreamRequest = {
      req,
      res,
      query,
      principal,
      ip: clientIp(req),
      logger,
      headers,
      log: new RequestLog(logger, id, res),
    };
    if (route.kind === "session") await serveSessionStream(context, route.id, stream);
    else await serveMultiplexedStream(context, stream);
  };

  return (req, res) => {
    const match = matchStreamRoute(req);
    if (!match) {
      app(req, res);
      return;
    }
    const id = requestIdOf(req);
    serve(match.route, match.query, id, req, res).catch((error: unknown) =>
      answerFailure(app, logger, req, res, id, error),
    );
  };
}
