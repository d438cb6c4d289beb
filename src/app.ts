/**
 * buildApp(context): the gateway's request listener. It never listens; the server (src/listen.ts) does.
 * The hot routes (streams, appends, the agent stream) are served by the gateway's own HTTP layer
 * (http/front.ts); the JSON API, the health checks and the pages by Express. Each route has one handler.
 */
import { existsSync } from "node:fs";
import type { IncomingMessage, RequestListener } from "node:http";
import express, { type RequestHandler } from "express";
import helmet from "helmet";
import { cookieRuleOf, createAuthenticator } from "./auth/middleware.js";
import { openAIRouter } from "./doors/openai-router.js";
import { AppError, createErrorHandler, createErrorWriter, notFoundHandler } from "./errors.js";
import { clientIp, compileTrust } from "./http/client-ip.js";
import type { AppContext } from "./http/context.js";
import { corsFor } from "./http/cors.js";
import { createFront } from "./http/front.js";
import { assertStoreReady } from "./http/guards.js";
import { healthRouter } from "./http/health.js";
import { accessLog } from "./http/request-log.js";
import { sessionsRouter } from "./http/sessions.js";
import { subscriptionsRouter } from "./http/subscriptions.js";
import { assertJsonDepth } from "./http/validation.js";

const clientModule = new URL("./client/index.js", import.meta.url);
const publicDir = new URL("../public/", import.meta.url);

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

export function buildApp(context: AppContext): RequestListener {
  const app = express();
  const trust = compileTrust(context.config.trustProxy);
  app.disable("x-powered-by");
  app.set("trust proxy", trust);
  // req.ip is what the hot routes take: an address (proxy-addr alone may return a header's text).
  Object.defineProperty(app.request, "ip", {
    configurable: true,
    enumerable: true,
    get(this: IncomingMessage) {
      return clientIp(this, trust);
    },
  });
  app.set("etag", false);

  app.use(accessLog(context.logger));
  const pageHeaders = helmet({
    // The dashboard streams over EventSource from the same origin; nothing else is loaded.
    contentSecurityPolicy: { directives: { "connect-src": ["'self'"], "upgrade-insecure-requests": null } },
    hsts: false,
  });
  // helmet's headers protect pages; JSON and event streams only need nosniff. Every header of an open
  // stream stays in memory for its lifetime, so streams carry no more than they need.
  app.use((req, res, next) => {
    if (req.path.startsWith("/api/") || req.path.startsWith("/v1/")) {
      res.setHeader("X-Content-Type-Options", "nosniff");
      return next();
    }
    pageHeaders(req, res, next);
  });
  const cors = corsFor(context.config);
  if (cors) app.use(cors);

  app.use(healthRouter(context));
  // The token first, then the body (as on the hot routes): an unauthenticated request is answered
  // without its body being read, so it holds no body buffer. Only /api/v1 routes take a body.
  app.use(
    "/api/v1",
    (_req, _res, next) => {
      try {
        assertStoreReady(context);
        next();
      } catch (error) {
        next(error);
      }
    },
    createAuthenticator(context.verifier, cookieRuleOf(context.config)),
    express.json({ limit: context.config.maxBodyBytes, strict: true }),
    rejectDeepJson(context.config.maxJsonDepth),
  );
  app.use("/api/v1", sessionsRouter(context));
  app.use("/api/v1", subscriptionsRouter(context));
  // The OpenAI-compatible door's cold routes (its streaming ones are the front's); OpenAI's error shape.
  app.use("/v1", openAIRouter(context));

  app.get("/client.js", (_req, res) => {
    if (!existsSync(clientModule)) throw new AppError("not_built", "run npm run build to build the client");
    res.type("text/javascript").sendFile(clientModule.pathname);
  });
  app.use(express.static(publicDir.pathname, { index: "index.html", fallthrough: true }));

  app.use(notFoundHandler);
  const errorWriter = createErrorWriter(context.logger, () => context.store.isReady());
  app.use(createErrorHandler(errorWriter));

  return createFront({ context, cors, trust, errorWriter, next: app });
}
