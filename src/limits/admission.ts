/**
 * Admission: the cost and abuse limits a request must pass before it gets a run or a stream, counted
 * per subject (per client address in open mode) in limits shared by every instance (limiter.ts).
 */
import { newSessionId, type RunRequest } from "../agent/run-manager.js";
import { generatedIdPrefix, mayCreateSession, requireScope } from "../auth/policy.js";
import type { Principal } from "../auth/principal.js";
import { authError } from "../auth/verifier.js";
import type { Config } from "../config.js";
import { AppError, type ErrorCode } from "../errors.js";
import { ipKeyPart } from "../http/client-ip.js";
import { randomId } from "../random-id.js";
import type { Limiter } from "./limiter.js";

export interface AdmissionDeps {
  limiter: Limiter;
  config: Readonly<Config>;
}

export function limited(code: ErrorCode, message: string, retryAfterSeconds: number): AppError {
  return new AppError(code, message, { "Retry-After": String(retryAfterSeconds) });
}

/** The key that limits count against: the token's subject, else (open mode) the client's address. */
export function limitSubject(principal: Principal, ip: string | undefined): string {
  return principal.subject !== null ? `sub:${principal.subject}` : `ip:${ipKeyPart(ip)}`;
}

/** A place among the connections allowed per subject and per IP, held while the stream is open. */
export interface Admission {
  connectionId: string;
  refresh(): Promise<void>;
  release(): Promise<void>;
}

const CONNECTION_PLACE_TTL_MS = 90_000;
/** How often an open stream's places are renewed (well inside their TTL). */
export const CONNECTION_PLACE_REFRESH_MS = 30_000;
/** One stream's places: per IP, and per subject when the token has one. */
class ConnectionPlaces implements Admission {
  readonly connectionId = `c_${randomId(6)}`;

  constructor(
    private readonly limiter: Limiter,
    private readonly limits: Config["limits"],
    // The address and subject, not the keys: those strings are built when used, not kept per stream.
    private readonly ip: string,
    private readonly subject: string | null,
  ) {}

  /** Takes (or renews) every place; false when one of them is full. */
  async take(): Promise<boolean> {
    const { limiter, limits, connectionId, subject } = this;
    const [byIp, bySubject] = await Promise.all([
      limiter.acquire(`conn:ip:${this.ip}`, connectionId, limits.connectionsPerIp, CONNECTION_PLACE_TTL_MS),
      subject === null
        ? null
        : limiter.acquire(
            `conn:sub:${subject}`,
            connectionId,
            limits.connectionsPerSubject,
            CONNECTION_PLACE_TTL_MS,
          ),
    ]);
    return byIp !== "full" && bySubject !== "full";
  }

  async refresh(): Promise<void> {
    await this.take();
  }

  async release(): Promise<void> {
    const { limiter, connectionId, subject } = this;
    await Promise.all([
      limiter.release(`conn:ip:${this.ip}`, connectionId),
      subject === null ? undefined : limiter.release(`conn:sub:${subject}`, connectionId),
    ]);
  }
}

/** Takes the stream's places in the per-subject and per-IP connection limits, or refuses with 429. */
export async function admitConnection(
  context: AdmissionDeps,
  principal: Principal,
  ip: string | undefined,
): Promise<Admission> {
  const places = new ConnectionPlaces(
    context.limiter,
    context.config.limits,
    ipKeyPart(ip),
    principal.subject,
  );
  if (!(await places.take())) {
    await places.release();
    throw new AppError(
      "too_many_connections",
      "too many open streams for this client; close one or retry later",
      { "Retry-After": "5" },
    );
  }
  return places;
}

/**
 * A session an outside producer's append creates: a place in the subject's new-sessions-per-minute
 * limit (per IP in open mode; none for an `admin` token). Each session is kept a day and announced on
 * the lifecycle feeds, so creating them is limited like starting runs.
 */
export async function admitNewSession(
  context: AdmissionDeps,
  principal: Principal,
  ip: string | undefined,
): Promise<void> {
  if (!principal.open && principal.scopes.has("admin")) return;
  const limit = context.config.limits.newSessionsPerMinute;
  const decision = await context.limiter.consume(`new-sessions:${limitSubject(principal, ip)}`, 60, 1, limit);
  if (!decision.ok) {
    throw limited(
      "too_many_new_sessions",
      `at most ${limit} new sessions per minute (LIMIT_NEW_SESSIONS_PER_MINUTE); appending to existing ones goes on`,
      decision.retryAfterSeconds,
    );
  }
}

/**
 * Everything a run needs before it starts: the `run` scope, an id the token may create, and places
 * in the subject's runs-per-minute and concurrent-runs limits (none for an `admin` token).
 */
export async function admitRun(
  context: AdmissionDeps,
  asking: Principal,
  ip: string | undefined,
  requestedId: string | undefined,
): Promise<Pick<RunRequest, "id" | "owner" | "slot" | "freshId">> {
  const principal = requireScope(asking, "run");
  let id = requestedId;
  if (id === undefined) {
    const prefix = generatedIdPrefix(principal);
    if (prefix === null) {
      throw authError(
        "forbidden",
        principal.subject === null
          ? "a token without `sub` or a `sessions` claim cannot own a session"
          : "this token may only use the session ids it names: give an `id`",
      );
    }
    id = `${prefix}${newSessionId()}`.slice(0, 64);
  } else if (!mayCreateSession(principal, id)) {
    throw authError("forbidden", `this token may not create session ${id}`);
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
  // The place is released only by the admission that took it: a request for an id whose run holds
  // one (a retry of its creation, or a conflict) must not free that run's place.
  const release = placed === "taken" ? () => limiter.release(concurrencyKey, id) : async () => {};
  if (!rate.ok) {
    await release();
    throw limited(
      "too_many_runs",
      `at most ${config.limits.runsPerMinute} runs per minute`,
      rate.retryAfterSeconds,
    );
  }
  if (placed === "full") {
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
      release,
    },
  };
}
