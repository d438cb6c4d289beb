/** Authorization and cost limits applied by the routes: one place for who may do what, and how often. */
import { newSessionId, type RunRequest } from "../agent/run-manager.js";
import { requireScopeOf } from "../auth/middleware.js";
import {
  canAccessSession,
  canCreateSession,
  claimAllows,
  generatedIdPrefix,
  isAdmin,
  type Principal,
} from "../auth/principal.js";
import { authError } from "../auth/verifier.js";
import { AppError, errors } from "../errors.js";
import type { SessionInfo } from "../store/types.js";
import type { AppContext } from "./context.js";

/** New work is refused while draining or while the store is unreachable (nothing is accepted that could be lost). */
export function assertAcceptingWork(context: AppContext): void {
  if (context.state.draining) throw errors.draining();
  if (!context.store.isReady()) throw errors.unavailable();
}

export function limited(code: string, message: string, retryAfterSeconds: number): AppError {
  return new AppError(429, code, message, { "Retry-After": String(retryAfterSeconds) });
}

/** The key that limits count against: the token's subject, else (open mode) the client's address. */
export function limitSubject(principal: Principal, ip: string | undefined): string {
  return principal.subject !== null ? `sub:${principal.subject}` : `ip:${ip ?? "unknown"}`;
}

export function assertCanAccess(principal: Principal, sessionId: string, info: SessionInfo | null): void {
  const allowed = info
    ? canAccessSession(principal, sessionId, info.owner)
    : isAdmin(principal) || claimAllows(principal, sessionId) || principal.sessionPatterns === null;
  if (!allowed) throw authError(403, "forbidden", `this token may not access session ${sessionId}`);
}

/**
 * Everything a run needs before it starts: the `run` scope, an id the token may create, and places
 * in the subject's runs-per-minute and concurrent-runs limits (none for an `admin` token).
 */
export async function admitRun(
  context: AppContext,
  asking: Principal,
  ip: string | undefined,
  requestedId: string | undefined,
): Promise<Pick<RunRequest, "id" | "owner" | "slot" | "freshId">> {
  const principal = requireScopeOf(asking, "run");
  let id = requestedId;
  if (id === undefined) {
    const prefix = generatedIdPrefix(principal);
    if (prefix === null) {
      throw authError(
        403,
        "forbidden",
        principal.subject === null
          ? "a token without `sub` or a `sessions` claim cannot own a session"
          : "this token may only use the session ids it names: give an `id`",
      );
    }
    id = `${prefix}${newSessionId()}`.slice(0, 64);
  } else if (!canCreateSession(principal, id)) {
    throw authError(403, "forbidden", `this token may not create session ${id}`);
  }
  const freshId = requestedId === undefined;
  // An operator's own token is never run-limited; open mode (where everyone is "admin") still is.
  if (!principal.open && principal.scopes.has("admin")) return { id, freshId, owner: principal.subject };
  const { limiter, config } = context;
  const subject = limitSubject(principal, ip);
  const concurrencyKey = `active-runs:${subject}`;
  const slotTtlMs = config.leaseMs * 3;
  // Both limits in one round trip (this is on the way to a run's first token).
  const [rate, placed] = await Promise.all([
    limiter.consume(`runs:${subject}`, 60, 1, config.limits.runsPerMinute),
    limiter.acquire(concurrencyKey, id, config.limits.concurrentRuns, slotTtlMs),
  ]);
  if (!rate.ok) {
    if (placed) await limiter.release(concurrencyKey, id);
    throw limited(
      "too_many_runs",
      `at most ${config.limits.runsPerMinute} runs per minute`,
      rate.retryAfterSeconds,
    );
  }
  if (!placed) {
    throw limited("too_many_active_runs", `at most ${config.limits.concurrentRuns} runs at once`, 5);
  }
  return {
    id,
    freshId,
    owner: principal.subject,
    slot: {
      refresh: async () => {
        await limiter.acquire(concurrencyKey, id, Number.MAX_SAFE_INTEGER, slotTtlMs);
      },
      release: () => limiter.release(concurrencyKey, id),
    },
  };
}
