/** CORS for the API (when CORS_ORIGINS is set): one middleware, for Express's routes and the hot routes. */
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
    allowedHeaders: ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-Request-Id"],
    exposedHeaders: ["X-Session-Id", "X-Request-Id", "Retry-After", "Idempotent-Replayed"],
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
