/** CORS for the API (when CORS_ORIGINS is set): one middleware for Express, and its headers for the front handler. */
import type { IncomingMessage } from "node:http";
import cors from "cors";
import type { Config } from "../config.js";

export type CorsHandler = ReturnType<typeof cors>;

export function corsFor(config: Readonly<Config>): CorsHandler | null {
  if (config.corsOrigins.length === 0) return null;
  const origins = config.corsOrigins;
  return cors({
    origin: origins.includes("*") ? true : origins,
    allowedHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id"],
    exposedHeaders: ["X-Session-Id", "X-Request-Id", "Retry-After"],
    maxAge: 600,
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
