/** Subscription sets: create and change the set of sessions that `?subscription=` connections follow. */
import { Router } from "express";
import { requireScope } from "../auth/middleware.js";
import { mayOwnSubscription, mayUseSubscription } from "../auth/policy.js";
import { authError } from "../auth/verifier.js";
import { errors } from "../errors.js";
import type { PatchOutcome } from "../mux/subscriptions.js";
import { randomId } from "../random-id.js";
import type { AppContext } from "./context.js";
import { isStreamableId } from "./multiplex.js";
import { parseOrThrow, parseSessionId, subscriptionCreateBody, subscriptionPatchBody } from "./validation.js";

function checkIds(field: string, ids: readonly string[]): string[] {
  const bad = ids.findIndex((id) => !isStreamableId(id));
  if (bad >= 0)
    throw errors.badRequest("invalid_session_id", `body.${field}.${bad}: must match ^[A-Za-z0-9_-]{1,64}$`);
  return [...new Set(ids)];
}

export function subscriptionsRouter(context: AppContext): Router {
  const router = Router();
  const { subscriptions, config, store } = context;
  const assertOwner = async (principal: Parameters<typeof mayUseSubscription>[0], id: string) => {
    if (!mayUseSubscription(principal, await subscriptions.owner(id))) {
      throw authError("forbidden", "this subscription set belongs to another subject");
    }
  };
  const tooMany = (outcome: PatchOutcome) => {
    if (outcome.kind === "too_many") {
      throw errors.badRequest(
        "too_many_sessions",
        `a subscription set holds at most ${config.maxSessionsPerSubscription} sessions (MAX_SESSIONS_PER_SUBSCRIPTION)`,
      );
    }
  };

  router
    .route("/subscriptions")
    .post(async (req, res) => {
      const principal = requireScope(res, "subscribe");
      if (!mayOwnSubscription(principal)) {
        throw authError("forbidden", "a subscription set needs a token with a `sub` to own it");
      }
      const body = parseOrThrow(subscriptionCreateBody, req.body);
      const sessions = checkIds("sessions", body.sessions);
      if (sessions.length > config.maxSessionsPerSubscription)
        tooMany({ kind: "too_many", size: sessions.length });
      if (!store.isReady()) throw errors.unavailable();
      const id = `sub_${randomId(12)}`;
      const outcome = await subscriptions.create(id, sessions, principal.subject);
      tooMany(outcome);
      res.status(201).location(`/api/v1/subscriptions/${id}`).json({ id, sessions });
    })
    .all(() => {
      throw errors.methodNotAllowed(["POST"]);
    });

  router
    .route("/subscriptions/:sid")
    .get(async (req, res) => {
      const id = parseSessionId(req.params.sid);
      const principal = requireScope(res, "subscribe");
      const members = await subscriptions.get(id);
      if (!members) throw errors.notFound(`no subscription ${id}`);
      await assertOwner(principal, id);
      res.json({ id, sessions: [...members.keys()] });
    })
    .patch(async (req, res) => {
      const id = parseSessionId(req.params.sid);
      const principal = requireScope(res, "subscribe");
      const body = parseOrThrow(subscriptionPatchBody, req.body);
      const add = checkIds("add", body.add ?? []);
      const remove = checkIds("remove", body.remove ?? []);
      if (add.length > config.maxSessionsPerSubscription) tooMany({ kind: "too_many", size: add.length });
      if (!store.isReady()) throw errors.unavailable();
      if (!(await subscriptions.get(id))) throw errors.notFound(`no subscription ${id}`);
      await assertOwner(principal, id);
      const outcome = await subscriptions.patch(id, add, remove);
      if (outcome.kind === "missing") throw errors.notFound(`no subscription ${id}`);
      tooMany(outcome);
      if (outcome.kind === "ok") res.json({ id, sessions: outcome.sessions });
    })
    .all(() => {
      throw errors.methodNotAllowed(["GET", "PATCH"]);
    });

  return router;
}
