/**
 * `POST /api/v1/sessions/:id/events` in its common exact form (a JSON body of known length), served by
 * a plain `http` handler in front of the rest: an append is the gateway's busiest request, and Express
 * with pino-http costs several times the append's own work. The answer, headers, log line and errors
 * are the ones the Express route gives.
 *
 * Anything else (chunked or compressed bodies, other media types or charsets, a body over the limit,
 * a trailing slash, percent-encoding) goes to Express untouched. An error is handed to Express too,
 * after the body was read, so its error handler writes the JSON and pino-http the log line.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { authenticate } from "../auth/middleware.js";
import { errors } from "../errors.js";
import { appendEvents } from "./append.js";
import type { AppContext } from "./context.js";
import { type CorsHandler, collectCorsHeaders } from "./cors.js";
import { RequestLog, requestIdOf } from "./request-log.js";
import { assertJsonDepth } from "./validation.js";

const APPEND_PATH = /^\/api\/v1\/sessions\/([A-Za-z0-9_-]{1,64})\/events$/;
/** The media types Express's JSON parser reads as UTF-8 without a conversion. */
const PLAIN_JSON = /^application\/json\s*(;\s*charset=("?)utf-8\2\s*)?$/i;
const NO_QUERY: Readonly<Record<string, unknown>> = Object.freeze({});

/** The session id of an append request in the exact form served here, else null. */
export function matchAppendRoute(req: IncomingMessage, maxBodyBytes: number): string | null {
  if (req.method !== "POST") return null;
  const match = APPEND_PATH.exec(req.url ?? "");
  if (!match) return null;
  const { headers } = req;
  if (headers["transfer-encoding"] !== undefined || headers["content-encoding"] !== undefined) return null;
  const length = Number(headers["content-length"]);
  if (!(length > 0 && length <= maxBodyBytes)) return null;
  const type = headers["content-type"];
  if (type === undefined || !PLAIN_JSON.test(type)) return null;
  return match[1]!;
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

/** JSON.parse with Express's strict mode (only an object or an array at the top) and its error. */
function parseJson(text: string): unknown {
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
 * The listener in front of `next` (the rest of the gateway): exact appends here, everything else to
 * `next`. `handOver` passes a request whose append failed to Express, with its error.
 */
export function createAppendFront(
  context: AppContext,
  cors: CorsHandler | null,
  next: RequestListener,
  handOver: (req: IncomingMessage, res: ServerResponse, error: unknown) => void,
): RequestListener {
  const { config, logger, verifier } = context;

  const serve = async (sessionId: string, req: IncomingMessage, res: ServerResponse) => {
    const requestId = requestIdOf(req);
    const log = logger.isLevelEnabled("info") ? new RequestLog(logger, requestId, res) : null;
    try {
      const text = await readBody(req);
      const body = parseJson(text);
      assertJsonDepth(body, config.maxJsonDepth);
      const headers: Record<string, string | number> = {
        "X-Request-Id": requestId,
        "X-Content-Type-Options": "nosniff",
      };
      if (cors) await collectCorsHeaders(cors, req, headers as Record<string, string>);
      const principal = await authenticate(verifier, config.auth.cookieName, req.headers, NO_QUERY);
      const ids = await appendEvents(context, principal, sessionId, body);
      const answer = JSON.stringify({ ids });
      headers["Content-Type"] = "application/json; charset=utf-8";
      headers["Content-Length"] = Buffer.byteLength(answer);
      res.writeHead(202, headers).end(answer);
      if (log) res.once("finish", () => log.finished());
    } catch (error) {
      if (res.headersSent || res.destroyed) return;
      handOver(req, res, error);
    }
  };

  return (req, res) => {
    const sessionId = matchAppendRoute(req, config.maxBodyBytes);
    if (sessionId === null) next(req, res);
    else void serve(sessionId, req, res);
  };
}
