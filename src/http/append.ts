/**
 * `POST /api/v1/sessions/:id/events`: an outside producer appends a batch. One function for both ways
 * a request reaches it (the Express route, and the plain front handler for the exact common form).
 */
import { createHash } from "node:crypto";
import { assertMaySession, mayCreateSession, mayWriteSession, requireScope } from "../auth/policy.js";
import type { Principal } from "../auth/principal.js";
import { AppError, errors } from "../errors.js";
import { admitNewSession, limited } from "../limits/admission.js";
import { TERMINAL_TYPES } from "../store/types.js";
import type { AppContext } from "./context.js";
import { assertAcceptingWork } from "./guards.js";
import { appendEventsBody, parseOrThrow, parseSessionId } from "./validation.js";

/** `Idempotency-Key`: printable ASCII without spaces, at most 255 characters. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

const digest = (text: string) => createHash("sha256").update(text).digest("base64url");

/**
 * The append's request id and fingerprint from an `Idempotency-Key` header: a retry with the same key
 * (on any instance) answers the first reply. The key is hashed, so no caller text goes into a Redis key.
 */
function idempotencyOf(header: string | string[] | undefined, body: unknown) {
  if (header === undefined) return {};
  if (typeof header !== "string" || !IDEMPOTENCY_KEY.test(header)) {
    throw errors.badRequest(
      "invalid_idempotency_key",
      "Idempotency-Key: one value of 1 to 255 printable ASCII characters, without spaces",
    );
  }
  return { requestId: `k.${digest(header)}`, fingerprint: digest(JSON.stringify(body)) };
}

/** Marks an answer given again for a repeated `Idempotency-Key`. */
export const IDEMPOTENT_REPLAYED = "Idempotent-Replayed";

export interface Appended {
  /** Positions of the batch's events, in order. */
  ids: string[];
  /** The answer of an earlier request with the same `Idempotency-Key`: nothing was written now. */
  replayed: boolean;
}

/** Appends the batch all or nothing; resolves to the positions of its events, in order. */
export async function appendEvents(
  context: AppContext,
  principal: Principal,
  rawId: string | undefined,
  rawBody: unknown,
  idempotencyKey: string | string[] | undefined,
  ip: string | undefined,
): Promise<Appended> {
  const { store, config, metrics } = context;
  const id = parseSessionId(rawId);
  const body = parseOrThrow(appendEventsBody, rawBody);
  const idempotency = idempotencyOf(idempotencyKey, body);
  if (body.events.length > config.maxEventsPerAppend) {
    throw errors.tooLarge(`at most ${config.maxEventsPerAppend} events per request (MAX_EVENTS_PER_APPEND)`);
  }
  const terminalAt = body.events.findIndex((event) => TERMINAL_TYPES.has(event.type));
  if (terminalAt >= 0 && terminalAt < body.events.length - 1) {
    throw errors.badRequest(
      "event_after_terminal",
      `body.events.${terminalAt + 1}: nothing may follow a terminal event (${body.events[terminalAt]!.type})`,
    );
  }
  assertAcceptingWork(context);
  requireScope(principal, "publish");
  const info = principal.open ? undefined : await store.getSession(id);
  if (info !== undefined) assertMaySession(mayWriteSession(principal, id, info), id);
  const options = {
    ...idempotency,
    rateLimit: { events: config.limits.publishEventsPerSecond, windowSeconds: 1 },
  };
  // Most appends go to a session that exists: they are tried as such (one round trip, as before), so
  // that only an append that creates its session takes a place in the new-sessions limit.
  let outcome = info === null ? null : await store.append(id, body.events, options);
  if (outcome === null || outcome.kind === "missing") {
    // Gone since the check above (expired): creating it anew is another question of the policy.
    if (info && !principal.open) assertMaySession(mayCreateSession(principal, id), id);
    await admitNewSession(context, principal, ip);
    outcome = await store.append(id, body.events, {
      ...options,
      createIfMissing: {
        id,
        model: body.model ?? null,
        metadata: body.metadata ?? {},
        owner: principal.subject,
        createdAt: Date.now(),
      },
    });
  }
  if (outcome.kind === "ended")
    throw errors.conflict("session_ended", `session ${id} has ended (${outcome.status})`);
  if (outcome.kind === "limited") {
    throw limited(
      "too_many_events",
      `at most ${config.limits.publishEventsPerSecond} events per second per session`,
      1,
    );
  }
  if (outcome.kind === "key_reused") {
    throw new AppError(
      "idempotency_key_reused",
      "this Idempotency-Key was used for a different request to this session; use a new key",
    );
  }
  if (outcome.kind !== "appended") throw new AppError("internal", "append failed");
  if (!outcome.replayed) {
    for (const event of body.events) metrics.eventsAppended.inc({ type: event.type });
    // This instance's readers get the batch now, not after the notice's pub/sub round trip.
    context.hub.deliverAppended(id, body.events, outcome);
  }
  return { ids: outcome.ids, replayed: outcome.replayed };
}
