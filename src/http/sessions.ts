/** Sessions: start runs, read status, stream one session, append from outside producers, cancel. */
import { Router } from "express";
import { principalOf, requireScope } from "../auth/middleware.js";
import { errors } from "../errors.js";
import type { SessionInfo } from "../store/types.js";
import { runRequest, serveAgentStream } from "./agent-stream.js";
import { appendEvents, IDEMPOTENT_REPLAYED } from "./append.js";
import type { AppContext } from "./context.js";
import { admitRun, assertAcceptingWork, assertCanAccess } from "./guards.js";
import { serveSessionStream } from "./session-stream.js";
import { fromExpress } from "./stream-request.js";
import { createSessionBody, parseOrThrow, parseSessionId } from "./validation.js";

export function sessionView(info: SessionInfo) {
  return {
    id: info.id,
    status: info.status,
    createdAt: new Date(info.createdAt).toISOString(),
    model: info.model,
    metadata: info.metadata,
    lastEventId: info.lastEventId,
  };
}

export function streamUrl(id: string): string {
  return `/api/v1/sessions/${id}/stream`;
}

export function sessionsRouter(context: AppContext): Router {
  const router = Router();
  const { store, runs } = context;
  const notAllowed = (allowed: string[]) => () => {
    throw errors.methodNotAllowed(allowed);
  };

  router
    .route("/agent/stream")
    .post((req, res) => {
      const stream = fromExpress(context, req, res);
      return serveAgentStream(context, stream, stream.ip, req.body);
    })
    .all(notAllowed(["POST"]));

  router
    .route("/sessions")
    .post(async (req, res) => {
      const body = parseOrThrow(createSessionBody, req.body);
      assertAcceptingWork(context);
      const admitted = await admitRun(context, principalOf(res), req.ip, body.id);
      const outcome = await runs.start({ ...runRequest(body), ...admitted });
      if (outcome.kind === "exists") {
        await admitted.slot?.release();
        throw errors.conflict("session_exists", `session ${body.id} already exists`);
      }
      const { id } = outcome.session;
      res
        .status(201)
        .location(`/api/v1/sessions/${id}`)
        .json({ id, status: "running", streamUrl: streamUrl(id) });
    })
    .all(notAllowed(["POST"]));

  router
    .route("/sessions/:id")
    .get(async (req, res) => {
      const id = parseSessionId(req.params.id);
      const principal = requireScope(res, "subscribe");
      const info = await store.getSession(id);
      assertCanAccess(principal, id, info);
      if (!info) throw errors.notFound(`no session ${id}`);
      res.json(sessionView(info));
    })
    .all(notAllowed(["GET"]));

  router
    .route("/sessions/:id/stream")
    .get((req, res) => serveSessionStream(context, req.params.id, fromExpress(context, req, res)))
    .all(notAllowed(["GET"]));

  router
    .route("/sessions/:id/events")
    .post(async (req, res) => {
      const { ids, replayed } = await appendEvents(
        context,
        principalOf(res),
        req.params.id,
        req.body,
        req.headers["idempotency-key"],
      );
      if (replayed) res.set(IDEMPOTENT_REPLAYED, "true");
      res.status(202).json({ ids });
    })
    .all(notAllowed(["POST"]));

  router
    .route("/sessions/:id/cancel")
    .post(async (req, res) => {
      const id = parseSessionId(req.params.id);
      if (!store.isReady()) throw errors.unavailable();
      const principal = principalOf(res);
      if (!principal.scopes.has("run") && !principal.scopes.has("publish")) requireScope(res, "run");
      if (!principal.open) assertCanAccess(principal, id, await store.getSession(id));
      const { before, status } = await runs.cancel(id);
      if (!before) throw errors.notFound(`no session ${id}`);
      if (before.status !== "running")
        throw errors.conflict("session_ended", `session ${id} has ended (${before.status})`);
      res.status(202).json({ id, status });
    })
    .all(notAllowed(["POST"]));

  return router;
}
