/**
 * buildApp(context): the request listener. It never listens; the server (or a test) does. The stream
 * routes (http/stream-front.ts) and the exact form of the busy POSTs, appends and agent runs
 * (http/post-front.ts), are served in front of Express; everything else is Express.
 */
import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, type RequestListener, type Server } from "node:http";
import express, { type RequestHandler } from "express";
import helmet from "helmet";
import { pinoHttp } from "pino-http";
import { createAuthenticator } from "./auth/middleware.js";
import { createErrorHandler, notFoundHandler } from "./errors.js";
import type { AppContext } from "./http/context.js";
import { corsFor } from "./http/cors.js";
import { rethrowHandedErrors } from "./http/handover.js";
import { healthRouter } from "./http/health.js";
import { multiplexRouter } from "./http/multiplex.js";
import { createPostFront } from "./http/post-front.js";
import { requestIdOf, serializeRequest } from "./http/request-log.js";
import { sessionsRouter } from "./http/sessions.js";
import { createStreamFront } from "./http/stream-front.js";
import { subscriptionsRouter } from "./http/subscriptions.js";
import { assertJsonDepth } from "./http/validation.js";

export { redactUrl } from "./http/request-log.js";

const clientModule = new URL("./client/index.js", import.meta.url);
const publicDir = new URL("../public/", import.meta.url);

/** The gateway's request listener, with `listen` as Express's app has it. */
export type GatewayApp = RequestListener & { listen(port: number, host: string): Server };

/** Deeply nested JSON costs the validators and the store; it is refused before any route sees it. */
function rejectDeepJson(maxDepth: number): RequestHandler {
  return (req, _res, next) => {
    try {
      assertJsonDepth(req.body, maxDepth);
      next();
    } catch (error) {
      next(error);
    }
  };
}

export function buildApp(context: AppContext): GatewayApp {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", context.config.trustProxy === "false" ? false : context.config.trustProxy);
  app.set("etag", false);

  app.use(
    pinoHttp({
      logger: context.logger,
      genReqId: (req, res) => {
        const id = requestIdOf(req);
        res.setHeader("X-Request-Id", id);
        return id;
      },
      serializers: {
        req: (req: IncomingMessage & { id?: unknown }) => serializeRequest(req, req.id),
      },
      autoLogging: {
        ignore: (req) => req.url === "/healthz" || req.url === "/readyz" || req.url === "/metrics",
      },
      // A 503 is an outage or a drain the error handler recognised (an expected state, not a fault).
      customLogLevel: (_req, res, error) =>
        res.statusCode === 503 ? "warn" : error || res.statusCode >= 500 ? "error" : "info",
    }),
  );
  const pageHeaders = helmet({
    // The dashboard streams over EventSource from the same origin; nothing else is loaded.
    contentSecurityPolicy: { directives: { "connect-src": ["'self'"], "upgrade-insecure-requests": null } },
    hsts: false,
  });
  // helmet's headers protect pages; JSON and event streams only need nosniff. Every header of an open
  // stream stays in memory for its lifetime, so streams carry no more than they need.
  app.use((req, res, next) => {
    if (req.path.startsWith("/api/")) {
      res.setHeader("X-Content-Type-Options", "nosniff");
      return next();
    }
    pageHeaders(req, res, next);
  });
  const cors = corsFor(context.config);
  if (cors) app.use(cors);
  app.use(rethrowHandedErrors);
  app.use(express.json({ limit: context.config.maxBodyBytes, strict: true }));
  app.use(rejectDeepJson(context.config.maxJsonDepth));

  app.use(healthRouter(context));
  app.use("/api/v1", createAuthenticator(context.verifier, context.config.auth.cookieName));
  app.use("/api/v1", sessionsRouter(context));
  app.use("/api/v1", multiplexRouter(context));
  app.use("/api/v1", subscriptionsRouter(context));

  app.get("/client.js", (_req, res) => {
    if (!existsSync(clientModule)) {
      res
        .status(404)
        .json({ error: { code: "not_built", message: "run npm run build to build the client" } });
      return;
    }
    res.type("text/javascript").sendFile(clientModule.pathname);
  });
  app.use(express.static(publicDir.pathname, { index: "index.html", fallthrough: true }));

  app.use(notFoundHandler);
  app.use(createErrorHandler(context.logger));

  const streamFront = createStreamFront(context, app, cors);
  const front = createPostFront(context, app, cors, streamFront);
  const listener: GatewayApp = Object.assign(front, {
    listen: (port: number, host: string) => createServer(listener).listen(port, host),
  });
  return listener;
}
