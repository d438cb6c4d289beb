/** Sessions (Express): start runs, read status, cancel. Their streams and appends are hot routes (front.ts). */
import { Router } from "express";
import { principalOf, requireScope } from "../auth/middleware.js";
import { assertMaySession, mayCancel, mayReadSession } from "../auth/policy.js";
import { errors } from "../errors.js";
import { admitRun } from "../limits/admission.js";
import type { SessionInfo } from "../store/types.js";
import { runRequest } from "./agent-stream.js";
import type { AppContext } from "./context.js";
import { assertAcceptingWork } from "./guards.js";
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
      assertMaySession(mayReadSession(principal, id, info), id);
      if (!info) throw errors.notFound(`no session ${id}`);
      res.json(sessionView(info));
    })
    .all(notAllowed(["GET"]));

  router
    .route("/sessions/:id/cancel")
    .post(async (req, res) => {
      const id = parseSessionId(req.params.id);
      if (!store.isReady()) throw errors.unavailable();
      const principal = principalOf(res);
      if (!mayCancel(principal)) requireScope(res, "run");
      if (!principal.open) assertMaySession(mayReadSession(principal, id, await store.getSession(id)), id);
      const { before, status } = await runs.cancel(id);
      if (!before) throw errors.notFound(`no session ${id}`);
      if (before.status !== "running")
        throw errors.conflict("session_ended", `session ${id} has ended (${before.status})`);
      res.status(202).json({ id, status });
    })
    .all(notAllowed(["POST"]));

  return router;
}
