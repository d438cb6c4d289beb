/**
 * The two busy POST routes in their common exact form (a JSON body of known length), served by a plain
 * `http` handler in front of the rest: `POST /api/v1/sessions/:id/events` (an append, the gateway's
 * most frequent request) and `POST /api/v1/agent/stream` (where every step delays a run's first
 * token). Express with pino-http costs an append several times its own work and a run's first token
 * about half a millisecond. The answers, headers, log lines and errors are the ones the Express routes
 * give.
 *
 * Anything else (chunked or compressed bodies, other media types or charsets, a body over the limit,
 * a query string, a trailing slash, percent-encoding) goes to Express untouched. An error before a
 * response was started is handed to Express, after the body was read, so its error handler writes
 * the JSON and pino-http the log line; an agent stream that fails after its head was sent is ended.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Express } from "express";
import { authenticate } from "../auth/middleware.js";
import { errors } from "../errors.js";
import { serveAgentStream } from "./agent-stream.js";
import { appendEvents, IDEMPOTENT_REPLAYED } from "./append.js";
import { clientIpResolver } from "./client-ip.js";
import type { AppContext } from "./context.js";
import { type CorsHandler, collectCorsHeaders } from "./cors.js";
import { answerFailure } from "./handover.js";
import { RequestLog, requestIdOf } from "./request-log.js";
import { assertJsonDepth } from "./validation.js";

const APPEND_PATH = /^\/api\/v1\/sessions\/([A-Za-z0-9_-]{1,64})\/events$/;
const AGENT_STREAM_PATH = "/api/v1/agent/stream";
/** The media types Express's JSON parser reads as UTF-8 without a conversion. */
const PLAIN_JSON = /^application\/json\s*(;\s*charset=("?)utf-8\2\s*)?$/i;
const NO_QUERY: Readonly<Record<string, unknown>> = Object.freeze({});

type PostRoute = { kind: "append"; sessionId: string } | { kind: "agent" };

const AGENT_ROUTE: PostRoute = Object.freeze({ kind: "agent" });

/** The route of a POST in the exact form served here, else null. */
export function matchPostRoute(req: IncomingMessage, maxBodyBytes: number): PostRoute | null {
  if (req.method !== "POST") return null;
  const url = req.url ?? "";
  let route: PostRoute;
  if (url === AGENT_STREAM_PATH) {
    route = AGENT_ROUTE;
  } else {
    const match = APPEND_PATH.exec(url);
    if (!match) return null;
    route = { kind: "append", sessionId: match[1]! };
  }
  const { headers } = req;
  if (headers["transfer-encoding"] !== undefined || headers["content-encoding"] !== undefined) return null;
  const length = Number(headers["content-length"]);
  if (!(length > 0 && length <= maxBodyBytes)) return null;
  const type = headers["content-type"];
  if (type === undefined || !PLAIN_JSON.test(type)) return null;
  return route;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () =>
      resolve(chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8")),
    );
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete) reject(new Error("the client went away before its body arrived"));
    });
  });
}

/**
 * JSON.parse with Express's strict mode (only an object or an array at the top) and its error. Like
 * Express's decoder, it drops a byte order mark.
 */
function parseJson(raw: string): unknown {
  const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
  // JSON's own white space (space, tab, line feed, carriage return) may come first.
  const first = /^[ \t\n\r]*(.)/.exec(text)?.[1];
  if (first === "{" || first === "[") {
    try {
      return JSON.parse(text);
    } catch {
      // Reported below, as Express's parser reports it.
    }
  }
  throw errors.badRequest("invalid_json", "the request body is not valid JSON");
}

/**
 * The listener in front of `next` (the rest of the gateway): exact POSTs here, everything else to
 * `next`. A request that fails before its response started is handed to `app` with its error.
 */
export function createPostFront(
  context: AppContext,
  app: Express,
  cors: CorsHandler | null,
  next: RequestListener,
): RequestListener {
  const clientIp = clientIpResolver(app);
  const { config, logger, verifier } = context;

  /** Reads and checks the body, then authenticates: what every route here needs first. */
  const prepare = async (req: IncomingMessage, requestId: string) => {
    const body = parseJson(await readBody(req));
    assertJsonDepth(body, config.maxJsonDepth);
    const headers: Record<string, string> = {
      "X-Request-Id": requestId,
      "X-Content-Type-Options": "nosniff",
    };
    if (cors) await collectCorsHeaders(cors, req, headers);
    const principal = await authenticate(verifier, config.auth.cookieName, req.headers, NO_QUERY);
    return { body, headers, principal };
  };

  const append = async (sessionId: string, req: IncomingMessage, res: ServerResponse, requestId: string) => {
    const log = logger.isLevelEnabled("info") ? new RequestLog(logger, requestId, res) : null;
    const { body, headers, principal } = await prepare(req, requestId);
    const { ids, replayed } = await appendEvents(
      context,
      principal,
      sessionId,
      body,
      req.headers["idempotency-key"],
    );
    const answer = JSON.stringify({ ids });
    if (replayed) headers[IDEMPOTENT_REPLAYED] = "true";
    res
      .writeHead(202, {
        ...headers,
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(answer),
      })
      .end(answer);
    if (log) res.once("finish", () => log.finished());
  };

  const agent = async (req: IncomingMessage, res: ServerResponse, requestId: string) => {
    const { body, headers, principal } = await prepare(req, requestId);
    const target = { req, res, principal, logger, headers, log: new RequestLog(logger, requestId, res) };
    await serveAgentStream(context, target, clientIp(req), body);
  };

  const serve = async (route: PostRoute, req: IncomingMessage, res: ServerResponse) => {
    const requestId = requestIdOf(req);
    try {
      if (route.kind === "append") await append(route.sessionId, req, res, requestId);
      else await agent(req, res, requestId);
    } catch (error) {
      if (!res.destroyed) answerFailure(app, logger, req, res, requestId, error);
    }
  };

  return (req, res) => {
    const route = matchPostRoute(req, config.maxBodyBytes);
    if (route === null) next(req, res);
    else void serve(route, req, res);
  };
}
