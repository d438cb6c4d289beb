/** Liveness, readiness and the Prometheus endpoint. */
import { Router } from "express";
import { errorBody } from "../errors.js";
import type { AppContext } from "./context.js";

export function healthRouter(context: AppContext): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", (_req, res) => {
    if (context.state.draining) {
      res.status(503).json(errorBody("draining", "this instance is shutting down"));
    } else if (!context.store.isReady()) {
      res.status(503).json(errorBody("unavailable", "the store (Redis) is unreachable"));
    } else {
      res.json({ status: "ready", store: context.store.kind });
    }
  });
  router.get("/metrics", async (_req, res) => {
    const { registry } = context.metrics;
    res.set("Content-Type", registry.contentType).send(await registry.metrics());
  });
  return router;
}
