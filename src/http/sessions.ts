/** Sessions (Express): start runs, read status, cancel. Their streams and appends are hot routes (front.ts). */
import { createHash } from "node:crypto";
import { Router } from "express";
import type { RunRequest } from "../agent/run-manager.js";
import { principalOf, requireScope } from "../auth/middleware.js";
import { assertMaySession, mayCancel, mayReadSession } from "../auth/policy.js";
import { errors } from "../errors.js";
import { admitRun } from "../limits/admission.js";
import type { SessionInfo } from "../store/types.js";
import { IDEMPOTENT_REPLAYED } from "./append.js";
import type { AppContext } from "./context.js";
import { assertAcceptingWork } from "./guards.js";
import { runRequest } from "./run-body.js";
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

/**
 * The digest of a creation request: sha256 of its validated body as canonical JSON (object keys
 * sorted at every level), so that a retry sent with its fields in another order is the same request.
 */
export function creationFingerprint(body: unknown): string {
  return createHash("sha256").update(canonicalJson(body)).digest("base64url");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value)
      .filter(([, field]) => field !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, field]) => `${JSON.stringify(key)}:${canonicalJson(field)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * The session is the one this request created before: the same caller (owner, or both anonymous) and
 * the same body. A session created otherwise (an append, a gateway id) has no fingerprint: never a retry.
 */
function isRetryOf(existing: SessionInfo | null, owner: string | null, fingerprint: string | undefined) {
  return (
    existing !== null &&
    fingerprint !== undefined &&
    existing.fingerprint === fingerprint &&
    existing.owner === owner
  );
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
      // A caller's own id: the request's digest is stored with the session it creates, so that its
      // retry (a lost answer) is answered as it was, and another request for the id is refused.
      const fingerprint = body.id === undefined ? undefined : creationFingerprint(body);
      const request: RunRequest = {
        ...runRequest(body),
        ...admitted,
        ...(fingerprint !== undefined ? { fingerprint } : {}),
      };
      const outcome = await runs.start(request);
      let id: string;
      if (outcome.kind === "exists") {
        await admitted.slot?.release();
        // Only here is the session read: a creation costs no more round trips than before.
        const existing = await store.getSession(body.id!);
        if (!isRetryOf(existing, admitted.owner ?? null, fingerprint)) {
          throw errors.conflict("session_exists", `session ${body.id} already exists`);
        }
        res.setHeader(IDEMPOTENT_REPLAYED, "true");
        id = body.id!;
      } else {
        id = outcome.session.id;
      }
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
