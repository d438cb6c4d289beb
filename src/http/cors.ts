/** CORS for the API (when CORS_ORIGINS is set): one middleware for Express, and its headers for the front handler. */
import type { IncomingMessage } from "node:http";
import cors from "cors";
import type { Config } from "../config.js";

export type CorsHandler = ReturnType<typeof cors>;

/**
 * Listed origins may send credentials (the cookie, with `EventSource(url, {withCredentials: true})` or
 * `fetch(url, {credentials: "include"})`): they get their own origin back and
 * `Access-Control-Allow-Credentials: true`. `*` allows any origin, without credentials (browsers refuse
 * `*` with credentials, and reflecting any origin with them would let every site act as the user).
 * Every answer under a list says `Vary: Origin`, so a cache never serves one origin's answer to another.
 */
export function corsFor(config: Readonly<Config>): CorsHandler | null {
  if (config.corsOrigins.length === 0) return null;
  const base = {
    allowedHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id"],
    exposedHeaders: ["X-Session-Id", "X-Request-Id", "Retry-After"],
    maxAge: 600,
  };
  if (config.corsOrigins.includes("*")) return cors({ ...base, origin: "*", credentials: false });
  const listed = new Set(config.corsOrigins);
  const forListed = { ...base, origin: config.corsOrigins, credentials: true };
  // An origin not listed gets neither its origin nor the credentials header back.
  const forOthers = { ...base, origin: config.corsOrigins, credentials: false };
  return cors((req, callback) => {
    const origin = req.headers.origin;
    callback(null, origin !== undefined && listed.has(origin) ? forListed : forOthers);
  });
}

/**
 * The headers `handler` sets for an actual (not preflight) request, collected into `into` instead of
 * set on the response: a stream sends them with its head, and a response with no headers set keeps no
 * header table for its lifetime.
 */
export function collectCorsHeaders(
  handler: CorsHandler,
  req: IncomingMessage,
  into: Record<string, string>,
): Promise<void> {
  const collector = {
    statusCode: 200,
    setHeader(name: string, value: string) {
      into[name] = String(value);
    },
    getHeader(name: string): string | undefined {
      return into[name];
    },
    end() {},
  };
  return new Promise((resolve, reject) => {
    handler(req, collector, (error?: unknown) => (error ? reject(error) : resolve()));
  });
}
