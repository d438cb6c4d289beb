/**
 * The OpenAI-compatible door's cold routes (Express), mounted at `/v1`; every error under `/v1`,
 * unknown paths included, takes OpenAI's shape.
 *
 *   GET  /v1/models                   the models this gateway serves
 *   POST /v1/responses/:id/cancel     cancels the run wherever it runs; answers the response object
 */
import { type ErrorRequestHandler, Router } from "express";
import { SIMULATED_MODEL } from "../agent/index.js";
import { cookieRuleOf, createAuthenticator, principalOf, requireScope } from "../auth/middleware.js";
import { assertMaySession, mayCancel, mayReadSession } from "../auth/policy.js";
import { errors } from "../errors.js";
import type { AppContext } from "../http/context.js";
import { parseSessionId } from "../http/validation.js";
import { parseEvent } from "./events.js";
import { createOpenAIErrorWriter } from "./openai-errors.js";
import { createResponsesTranslator, sessionIdOfResponse } from "./openai-responses.js";
import { storedEvents } from "./run.js";

/** When the gateway started serving (the `created` of its models). */
const SERVING_SINCE_S = Math.floor(Date.now() / 1000);

export function openAIRouter(context: AppContext): Router {
  const router = Router();
  const { config, store, runs } = context;
  const notAllowed = (allowed: string[]) => () => {
    throw errors.methodNotAllowed(allowed);
  };
  router.use(createAuthenticator(context.verifier, cookieRuleOf(config)));

  router
    .route("/models")
    .get((_req, res) => {
      const ids = [...new Set([config.defaultModel, SIMULATED_MODEL])];
      res.json({
        object: "list",
        data: ids.map((id) => ({ id, object: "model", created: SERVING_SINCE_S, owned_by: "sse-gateway" })),
      });
    })
    .all(notAllowed(["GET"]));

  router
    .route("/responses/:id/cancel")
    .post(async (req, res) => {
      const responseId = req.params.id ?? "";
      const id = sessionIdOfResponse(responseId);
      if (id === null) throw errors.notFound(`no response ${responseId}`);
      parseSessionId(id);
      if (!store.isReady()) throw errors.unavailable();
      const principal = principalOf(res);
      if (!mayCancel(principal)) requireScope(res, "run");
      const info = await store.getSession(id);
      assertMaySession(mayReadSession(principal, id, info), id, `response ${responseId}`);
      if (!info) throw errors.notFound(`no response ${responseId}`);
      // Cancelling a cancelled response answers it again; one that ended otherwise cannot be cancelled.
      if (info.status === "running") await runs.cancel(id);
      else if (info.status !== "cancelled") {
        throw errors.conflict("session_ended", `response ${responseId} has ended (${info.status})`);
      }
      const translator = createResponsesTranslator({
        sessionId: id,
        model: info.model ?? "unknown",
        createdAtMs: info.createdAt,
      });
      for (const event of await storedEvents(context, id)) translator.next(parseEvent(event));
      res.set("X-Session-Id", id).json(translator.response());
    })
    .all(notAllowed(["POST"]));

  router.use((req, _res, next) => next(errors.notFound(`no route for ${req.method} /v1${req.path}`)));
  const writer = createOpenAIErrorWriter(context.logger, () => store.isReady());
  const onError: ErrorRequestHandler = (error, _req, res, _next) => writer.send(res, error);
  router.use(onError);
  return router;
}
