/**
 * The hot routes, served by the gateway's own small HTTP layer in front of Express (which serves the
 * JSON API, the health checks and the pages). Each route has this one handler, for every form of
 * request; Express has none of them:
 *
 *   GET|HEAD /api/v1/stream                  many sessions on one stream
 *   GET|HEAD /api/v1/sessions/:id/stream     one session's stream
 *   POST     /api/v1/sessions/:id/events     an outside producer's append (the most frequent request)
 *   POST     /api/v1/agent/stream            a run streamed on its response (every step delays its first token)
 *   the front doors' streaming routes (/v1/chat/completions, /v1/responses, /api/v1/chat: doors/routes.ts)
 *
 * Why not Express: an open stream keeps its request and response for hours, and Express re-parents both
 * and adds its own state (measured: 19 KB of heap per idle stream through Express, 11 KB here); an
 * append through Express and its logger cost about a tenth more CPU per event.
 *
 * What is shared with Express is shared code, not a copy: the request id and access log line
 * (request-log.ts), CORS (the `cors` middleware), the client's address (`proxy-addr`, one trust rule),
 * request bodies (`body-parser`: its raw reader here, its JSON reader in Express), authentication and the
 * error writer (errors.ts).
 *
 * Routing rule: the path up to `?` (or `#`) is matched exactly (case-sensitive, no trailing slash), with
 * the session id percent-decoded. Another method on a matched path is 405 with Allow; OPTIONS is CORS
 * preflight when CORS_ORIGINS is set. A request is authenticated on its headers before any body is
 * read. A POST body must be JSON (`application/json`, UTF-8), at most MAX_BODY_BYTES (413), with an
 * object or array at the top; a stream request has no body.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { parse as parseQuery } from "node:querystring";
import bodyParser from "body-parser";
import { authenticate, cookieRuleOf } from "../auth/middleware.js";
import { createOpenAIErrorWriter } from "../doors/openai-errors.js";
import { type DoorRoute, doorMethods, isOpenAIRoute, matchDoorRoute, serveDoor } from "../doors/routes.js";
import { AppError, type ErrorWriter, errors } from "../errors.js";
import { InFlightRequests } from "../limits/in-flight.js";
import { serveAgentStream } from "./agent-stream.js";
import { appendEvents, IDEMPOTENT_REPLAYED } from "./append.js";
import { clientIp, type TrustRule } from "./client-ip.js";
import type { AppContext } from "./context.js";
import type { CorsHandler } from "./cors.js";
import { assertStoreReady } from "./guards.js";
import { serveMultiplexedStream } from "./multiplex.js";
import { RequestLog, requestIdOf } from "./request-log.js";
import { serveSessionStream } from "./session-stream.js";
import type { StreamRequest } from "./stream-request.js";
import { assertJsonDepth, parseSessionId } from "./validation.js";

type HotRoute =
  | { kind: "multiplexed" }
  | { kind: "session-stream"; id: string | null }
  | { kind: "append"; id: string | null }
  | { kind: "agent" }
  | { kind: "door"; door: DoorRoute };

const MULTIPLEXED: HotRoute = Object.freeze({ kind: "multiplexed" });
const AGENT: HotRoute = Object.freeze({ kind: "agent" });
const SESSION_PATH = /^\/api\/v1\/sessions\/([^/]+)\/(stream|events)$/;
const STREAM_METHODS = ["GET", "HEAD"];
const POST_METHODS = ["POST"];
const JSON_TYPE = /^application\/json\s*(;\s*charset=("?)utf-8\2\s*)?$/i;

const PROBES: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);

function isProbe(url: string): boolean {
  const mark = url.indexOf("?");
  return PROBES.has(mark < 0 ? url : url.slice(0, mark));
}

/** The hot route a request's path names, with its query text; null for every other path. */
export function matchHotRoute(url: string): { route: HotRoute; query: string } | null {
  if (!url.startsWith("/api/v1/") && !url.startsWith("/v1/")) return null;
  let end = url.length;
  const mark = url.indexOf("?");
  if (mark >= 0) end = mark;
  const fragment = url.indexOf("#");
  if (fragment >= 0 && fragment < end) end = fragment;
  const path = url.slice(0, end);
  const query = mark >= 0 && mark === end ? url.slice(mark + 1) : "";
  const door = matchDoorRoute(path);
  if (door) return { route: { kind: "door", door }, query };
  if (path === "/api/v1/stream") return { route: MULTIPLEXED, query };
  if (path === "/api/v1/agent/stream") return { route: AGENT, query };
  const session = SESSION_PATH.exec(path);
  if (!session) return null;
  let id: string | null;
  try {
    id = decodeURIComponent(session[1]!);
  } catch {
    id = null; // Not valid percent-encoding: the route answers 400 invalid_path.
  }
  return { route: { kind: session[2] === "stream" ? "session-stream" : "append", id }, query };
}

const methodsOf = (route: HotRoute) =>
  route.kind === "door"
    ? doorMethods(route.door)
    : route.kind === "multiplexed" || route.kind === "session-stream"
      ? STREAM_METHODS
      : POST_METHODS;

/** A route whose path names an id that is not valid percent-encoding. */
const hasInvalidId = (route: HotRoute) =>
  route.kind === "door" ? "id" in route.door && route.door.id === null : "id" in route && route.id === null;

const UTF8 = new TextDecoder();

/** A body's JSON: an object or an array at the top (a leading byte-order mark is dropped). */
function parseJsonBody(bytes: Buffer | undefined): unknown {
  let body: unknown;
  try {
    body = JSON.parse(UTF8.decode(bytes));
  } catch {
    throw errors.badRequest("invalid_json", "the request body is not valid JSON");
  }
  if (typeof body !== "object" || body === null) {
    throw errors.badRequest("invalid_json", "the request body must be a JSON object or array");
  }
  return body;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/** Runs the CORS middleware on the response; false when it answered a preflight itself. */
function applyCors(cors: CorsHandler, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  return new Promise((resolve, reject) => {
    cors(req, res, (error?: unknown) => (error ? reject(error) : resolve(true)));
    if (res.writableEnded) resolve(false);
  });
}

export interface FrontDependencies {
  context: AppContext;
  cors: CorsHandler | null;
  trust: TrustRule;
  errorWriter: ErrorWriter;
  /** Everything that is not a hot route (Express). */
  next: RequestListener;
}

export function createFront({ context, cors, trust, errorWriter, next }: FrontDependencies): RequestListener {
  const { config, logger, verifier } = context;
  // The bytes through body-parser (limit, Content-Encoding, errors), the JSON by JSON.parse: its JSON
  // reader would decode them through iconv-lite first, a tenth of an append's CPU here.
  const readBytes = bodyParser.raw({ limit: config.maxBodyBytes, type: () => true });
  const cookie = cookieRuleOf(config);
  const openAIErrorWriter = createOpenAIErrorWriter(logger, () => context.store.isReady());

  async function jsonBody(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const type = req.headers["content-type"];
    if (!hasBody(req)) throw errors.badRequest("invalid_request", "body: send a JSON object");
    if (type === undefined || !JSON_TYPE.test(type)) {
      throw new AppError("unsupported_media_type", "send the body as application/json (UTF-8)");
    }
    await new Promise<void>((resolve, reject) => {
      readBytes(req, res, (error?: unknown) => (error ? reject(error) : resolve()));
    });
    const body = parseJsonBody((req as { body?: Buffer }).body);
    assertJsonDepth(body, config.maxJsonDepth);
    return body;
  }

  async function serve(route: HotRoute, stream: StreamRequest): Promise<void> {
    const { req, res } = stream;
    if (route.kind === "append") {
      // The id is checked before the body is read.
      const id = parseSessionId(route.id);
      const { ids, replayed } = await appendEvents(
        context,
        stream.principal,
        id,
        await jsonBody(req, res),
        req.headers["idempotency-key"],
        stream.ip,
      );
      const answer = JSON.stringify({ ids });
      const headers: Record<string, string | number> = {
        ...stream.headers,
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(answer),
      };
      if (replayed) headers[IDEMPOTENT_REPLAYED] = "true";
      res.writeHead(202, headers).end(answer);
      res.once("finish", () => stream.log?.finished());
      return;
    }
    if (route.kind === "agent") {
      await serveAgentStream(context, stream, stream.ip, await jsonBody(req, res));
      return;
    }
    if (route.kind === "door" && req.method === "POST") {
      await serveDoor(context, route.door, stream, () => jsonBody(req, res));
      return;
    }
    if (hasBody(req)) throw errors.badRequest("unexpected_body", "a stream request has no body");
    if (route.kind === "door") {
      await serveDoor(context, route.door, stream, () => Promise.resolve(undefined));
      return;
    }
    if (route.kind === "session-stream") await serveSessionStream(context, route.id, stream);
    else await serveMultiplexedStream(context, stream);
  }

  async function handle(
    route: HotRoute,
    queryText: string,
    req: IncomingMessage,
    res: ServerResponse,
    ip: string | undefined,
  ) {
    const requestId = requestIdOf(req);
    const log = new RequestLog(logger, requestId, res);
    // Sent with the head: a response with no header set keeps no header table for its lifetime.
    const headers: Record<string, string> = {
      "X-Request-Id": requestId,
      "X-Content-Type-Options": "nosniff",
    };
    try {
      if (cors && !(await applyCors(cors, req, res))) {
        log.finished();
        return;
      }
      const allowed = methodsOf(route);
      if (!allowed.includes(req.method ?? "")) throw errors.methodNotAllowed(allowed.slice(0, 1));
      if (hasInvalidId(route)) {
        throw errors.badRequest("invalid_path", "the request path is not valid percent-encoding");
      }
      assertStoreReady(context);
      const query = parseQuery(queryText);
      const principal = await authenticate(verifier, cookie, req, query);
      const stream: StreamRequest = {
        req,
        res,
        query,
        principal,
        ip,
        logger,
        headers,
        log,
      };
      await serve(route, stream);
    } catch (error) {
      if (res.destroyed) return;
      const writer = route.kind === "door" && isOpenAIRoute(route.door) ? openAIErrorWriter : errorWriter;
      writer.send(res, error, headers);
      if (res.writableEnded) res.once("finish", () => log.finished());
    }
  }

  const inFlight = new InFlightRequests(config.limits.requestsInFlightPerIp);
  /** Refused before anything else: too many requests of this address are in flight on this instance. */
  function refuseInFlight(req: IncomingMessage, res: ServerResponse): void {
    const requestId = requestIdOf(req);
    const log = new RequestLog(logger, requestId, res);
    res.once("close", () => log.finished());
    const limit = config.limits.requestsInFlightPerIp;
    errorWriter.send(
      res,
      new AppError(
        "too_many_requests",
        `at most ${limit} requests of one client address in flight at once (LIMIT_REQUESTS_IN_FLIGHT_PER_IP)`,
        { "Retry-After": "1" },
      ),
      { "X-Request-Id": requestId, "X-Content-Type-Options": "nosniff" },
    );
  }

  return (req, res) => {
    const url = req.url ?? "";
    const ip = clientIp(req, trust);
    // Probes (health, metrics) are cheap and must answer whatever else an address is doing.
    if (!isProbe(url) && !inFlight.enter(res, ip ?? "unknown")) {
      refuseInFlight(req, res);
      return;
    }
    const match = matchHotRoute(url);
    if (match === null) next(req, res);
    else void handle(match.route, match.query, req, res, ip);
  };
}
