/** Liveness, readiness and the Prometheus endpoint. */
import { Router } from "express";
import type { ConnectionState } from "../backend/types.js";
import { errorBody } from "../errors.js";
import type { AppContext } from "./context.js";

/** `{command: "ready", subscriber: "reconnecting"}`: each of the backend's connections by its role. */
function byName(connections: readonly ConnectionState[]): Record<string, string> {
  return Object.fromEntries(connections.map((connection) => [connection.name, connection.status]));
}

export function healthRouter(context: AppContext): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", (_req, res) => {
    if (context.state.draining) {
      res.status(503).json(errorBody("draining", "this instance is shutting down"));
      return;
    }
    // Asked of the backend, which knows its connections: the body says which one is down.
    const readiness = context.readiness();
    const connections = byName(readiness.connections);
    if (!readiness.ready) {
      res.status(503).json({ ...errorBody("unavailable", "the store (Redis) is unreachable"), connections });
    } else {
      res.json({ status: "ready", store: context.store.kind, connections });
    }
  });
  router.get("/metrics", async (_req, res) => {
    const { registry } = context.metrics;
    res.set("Content-Type", registry.contentType).send(await registry.metrics());
  });
  return router;
}
