/** `GET /api/v1/stream`: many sessions on one SSE connection, by list or by subscription set. */
import { requireScopeOf } from "../auth/middleware.js";
import { canAccessSession, claimAllows, isAdmin, type Principal } from "../auth/principal.js";
import { authError } from "../auth/verifier.js";
import { errors } from "../errors.js";
import { CursorError, type CursorState, CursorTracker, decodeCursor } from "../mux/cursor.js";
import { hasReceivedEnd, type StreamConnection } from "../mux/stream-connection.js";
import type { SubscriptionChange } from "../mux/subscriptions.js";
import { plainFrame } from "../sse/frames.js";
import { LIFECYCLE_FEED, type SessionInfo, type StoredEvent } from "../store/types.js";
import type { AppContext } from "./context.js";
import { endEmpty, type StreamRequest } from "./stream-request.js";
import { admitConnection, resumeId, startStream } from "./streams.js";
import { SESSION_ID_PATTERN } from "./validation.js";

/** Indexes of subscription sets grow with every add; this bounds what a cursor may name. */
const MAX_SUBSCRIPTION_INDEX = 2 ** 31 - 1;
const MAX_CURSOR_CHARS = 256 * 1024;

export function isStreamableId(id: string): boolean {
  return id === LIFECYCLE_FEED || SESSION_ID_PATTERN.test(id);
}

/** Whether this client may read a session (one that does not exist yet only through its claim). */
function mayRead(principal: Principal, id: string, info: SessionInfo | null): boolean {
  if (id === LIFECYCLE_FEED) return true;
  return info
    ? canAccessSession(principal, id, info.owner)
    : isAdmin(principal) || claimAllows(principal, id);
}

/** The lifecycle feed shows only the sessions the reader may read (admin sees all). */
function lifecycleVisibility(principal: Principal): ((event: StoredEvent) => boolean) | null {
  if (isAdmin(principal)) return null;
  return (event) => {
    try {
      const data = JSON.parse(event.data) as { id?: unknown; owner?: unknown };
      return (
        typeof data.id === "string" &&
        canAccessSession(principal, data.id, typeof data.owner === "string" ? data.owner : null)
      );
    } catch {
      return false;
    }
  };
}

interface Entry {
  id: string;
  index: number;
  start: CursorState;
  info: SessionInfo | null;
}

async function addEntries(
  connection: StreamConnection,
  principal: Principal,
  entries: readonly Entry[],
): Promise<void> {
  const visible = lifecycleVisibility(principal);
  await Promise.all(
    entries.map((entry) => {
      if (!mayRead(principal, entry.id, entry.info)) {
        connection.refuseSession(entry.id);
        return Promise.resolve();
      }
      return connection.addSession(
        entry.id,
        entry.index,
        entry.start,
        entry.info,
        entry.id === LIFECYCLE_FEED ? visible : null,
      );
    }),
  );
}

export function mayUseSubscription(principal: Principal, owner: string | null): boolean {
  return isAdmin(principal) || (owner !== null && owner === principal.subject);
}

function readCursor(stream: StreamRequest, maxIndex: number, maxEntries: number): CursorTracker | null {
  const text = resumeId(stream.req, stream.query);
  if (text === undefined) return null;
  try {
    return new CursorTracker(decodeCursor(text, { maxIndex, maxEntries, maxLength: MAX_CURSOR_CHARS }));
  } catch (error) {
    if (error instanceof CursorError) throw errors.badRequest("invalid_cursor", error.message);
    throw error;
  }
}

function parseSessionList(raw: unknown, max: number): string[] {
  if (typeof raw !== "string")
    throw errors.badRequest("invalid_request", "sessions: give a comma-separated list of ids");
  const ids = [
    ...new Set(
      raw
        .split(",")
        .map((part) => part.trim())
        .filter((part) => part !== ""),
    ),
  ];
  if (ids.length === 0) throw errors.badRequest("invalid_request", "sessions: the list is empty");
  if (ids.length > max) {
    throw errors.badRequest(
      "too_many_sessions",
      `sessions: at most ${max} on a query (MAX_SESSIONS_PER_CONNECTION); use a subscription set (POST /api/v1/subscriptions) for more`,
    );
  }
  const bad = ids.find((id) => !isStreamableId(id));
  if (bad !== undefined) {
    throw errors.badRequest(
      "invalid_session_id",
      `sessions: "${bad.slice(0, 80)}" must match ^[A-Za-z0-9_-]{1,64}$`,
    );
  }
  return ids;
}

/** `GET /api/v1/stream?sessions=…|subscription=…`. */
export async function serveMultiplexedStream(context: AppContext, stream: StreamRequest): Promise<void> {
  const { config, metrics, subscriptions } = context;
  const { req, res, query } = stream;
  const { sessions: sessionsQuery, subscription } = query;
  if ((sessionsQuery === undefined) === (subscription === undefined)) {
    throw errors.badRequest("invalid_request", "give exactly one of `sessions` or `subscription`");
  }
  if (context.state.draining) throw errors.draining();
  const principal = requireScopeOf(stream.principal, "subscribe");

  if (sessionsQuery !== undefined) {
    const ids = parseSessionList(sessionsQuery, config.maxSessionsPerConnection);
    const tracker = readCursor(stream, ids.length - 1, ids.length);
    const infos = await infosOf(context, ids);
    const entries: Entry[] = ids.map((id, index) => ({
      id,
      index,
      info: infos[index]!,
      start: startOf(tracker, index, infos[index]!, id),
    }));
    const readable = entries.filter((entry) => mayRead(principal, entry.id, entry.info));
    if (readable.length === 0)
      throw authError(403, "forbidden", "this token may not read any of these sessions");
    const endless = ids.includes(LIFECYCLE_FEED);
    if (tracker && !endless && readable.every((entry) => entry.start.kind === "finished")) {
      endEmpty(stream, 204);
      return;
    }
    const admission = await admitConnection(context, principal, stream.ip);
    if (tracker) metrics.resumes.inc({ kind: "multiplexed" });
    metrics.sessionsPerConnection.observe(ids.length);
    const connection = startStream(context, stream, {
      kind: "multiplexed",
      framing: "mux",
      closeWhenAllEnded: !endless,
      tracker: tracker ?? new CursorTracker(),
      admission,
    });
    connection.send(plainFrame("connected", { connectionId: admission.connectionId, sessions: ids }));
    await addEntries(connection, principal, entries);
    connection.sessionsAdded();
    return;
  }

  if (typeof subscription !== "string" || !SESSION_ID_PATTERN.test(subscription)) {
    throw errors.badRequest("invalid_subscription_id", "subscription: must match ^[A-Za-z0-9_-]{1,64}$");
  }
  const tracker =
    readCursor(stream, MAX_SUBSCRIPTION_INDEX, config.maxSessionsPerSubscription * 2) ?? new CursorTracker();
  // Follow before reading the set: a change made in between is then applied (idempotently) too.
  const changes: SubscriptionChange[] = [];
  let onChange: (change: SubscriptionChange) => void = (change) => {
    changes.push(change);
  };
  const unfollow = await subscriptions.follow(subscription, (change) => onChange(change));
  const members = await subscriptions.get(subscription).catch((error: unknown) => {
    unfollow();
    throw error;
  });
  if (!members) {
    unfollow();
    throw errors.notFound(`no subscription ${subscription}`);
  }
  if (!mayUseSubscription(principal, await subscriptions.owner(subscription))) {
    unfollow();
    throw authError(403, "forbidden", "this subscription set belongs to another subject");
  }
  const admission = await admitConnection(context, principal, stream.ip).catch((error: unknown) => {
    unfollow();
    throw error;
  });
  if (resumeId(req, query) !== undefined) metrics.resumes.inc({ kind: "subscription" });
  metrics.sessionsPerConnection.observe(members.size);
  const connection = startStream(context, stream, {
    kind: "multiplexed",
    framing: "mux",
    closeWhenAllEnded: false,
    tracker,
    admission,
  });
  metrics.subscriptionSetsOpen.inc();
  const touch = setInterval(
    () => subscriptions.touch(subscription).catch(() => {}),
    Math.max(1000, (config.subscriptionTtlSeconds * 1000) / 4),
  );
  touch.unref();
  const stopFollowing = () => {
    unfollow();
    clearInterval(touch);
    metrics.subscriptionSetsOpen.dec();
  };
  // The stream is closed already when the client went away while it was being set up.
  if (res.destroyed) stopFollowing();
  else res.on("close", stopFollowing);
  await subscriptions.touch(subscription);
  const ids = [...members.keys()];
  connection.send(
    plainFrame("connected", { connectionId: admission.connectionId, sessions: ids, subscription }),
  );
  const addAll = async (added: Array<{ id: string; index: number }>) => {
    const infos = await infosOf(
      context,
      added.map((entry) => entry.id),
    );
    await addEntries(
      connection,
      principal,
      added.map((entry, i) => ({
        ...entry,
        info: infos[i]!,
        start: startOf(tracker, entry.index, infos[i]!, entry.id),
      })),
    );
  };
  await addAll(ids.map((id) => ({ id, index: members.get(id)! })));
  const apply = (change: SubscriptionChange) => {
    for (const id of change.remove) connection.removeSession(id);
    connection.send(
      plainFrame("subscribed", { add: change.add.map((entry) => entry.id), remove: change.remove }),
    );
    addAll(change.add).catch((error: unknown) =>
      context.logger.warn({ err: error }, "could not add sessions"),
    );
  };
  for (const change of changes) apply(change);
  onChange = apply;
  connection.sessionsAdded();
}

function infosOf(context: AppContext, ids: readonly string[]): Promise<Array<SessionInfo | null>> {
  return Promise.all(
    ids.map((id) => (id === LIFECYCLE_FEED ? Promise.resolve(null) : context.store.getSession(id))),
  );
}

function startOf(
  tracker: CursorTracker | null,
  index: number,
  info: SessionInfo | null,
  id: string,
): CursorState {
  const state: CursorState = tracker ? tracker.get(index) : { kind: "none" };
  if (state.kind === "at" && id !== LIFECYCLE_FEED && hasReceivedEnd(info, state.position))
    return { kind: "finished" };
  return state;
}
