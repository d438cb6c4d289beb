/** `GET /api/v1/stream`: many sessions on one SSE connection, by list or by subscription set. */
import {
  isAdmin,
  lifecycleFeedOwner,
  mayReadSession,
  mayUseSubscription,
  readIncarnation,
  requireScope,
} from "../auth/policy.js";
import type { Principal } from "../auth/principal.js";
import { authError } from "../auth/verifier.js";
import { errors } from "../errors.js";
import { admitConnection } from "../limits/admission.js";
import { CursorError, type CursorState, CursorTracker, decodeCursor } from "../mux/cursor.js";
import type { EventView } from "../mux/session-reader.js";
import { hasReceivedEnd, type StreamConnection } from "../mux/stream-connection.js";
import type { SubscriptionChange } from "../mux/subscriptions.js";
import { plainFrame } from "../sse/frames.js";
import { ownerFeedId } from "../store/session-fields.js";
import { LIFECYCLE_FEED, type SessionInfo } from "../store/types.js";
import type { AppContext } from "./context.js";
import { endEmpty, type StreamRequest } from "./stream-request.js";
import { resumeId, startStream } from "./streams.js";
import { SESSION_ID_PATTERN } from "./validation.js";

/** Indexes of subscription sets grow with every add; this bounds what a cursor may name. */
const MAX_SUBSCRIPTION_INDEX = 2 ** 31 - 1;
const MAX_CURSOR_CHARS = 256 * 1024;

export function isStreamableId(id: string): boolean {
  return id === LIFECYCLE_FEED || SESSION_ID_PATTERN.test(id);
}

/** The lifecycle feed is open to every reader (each sees only its own entries); a session, by the policy. */
function mayRead(principal: Principal, id: string, info: SessionInfo | null): boolean {
  return id === LIFECYCLE_FEED || mayReadSession(principal, id, info);
}

/**
 * The lifecycle feed shows only the sessions the reader may read (admin sees all), and a session's
 * `owner` (another subject's `sub`) only to that owner and to admin.
 */
function lifecycleView(principal: Principal): EventView | null {
  if (isAdmin(principal)) return null;
  return (event) => {
    let data: { id?: unknown; owner?: unknown };
    try {
      data = JSON.parse(event.data) as { id?: unknown; owner?: unknown };
    } catch {
      return null;
    }
    const owner = typeof data.owner === "string" ? data.owner : null;
    if (typeof data.id !== "string" || !mayReadSession(principal, data.id, { owner })) return null;
    if (owner === null || owner === principal.subject) return event;
    const { owner: _withheld, ...shown } = data;
    return { id: event.id, type: event.type, data: JSON.stringify(shown) };
  };
}

/** The stream `@sessions` reads for this principal: the shared feed, or its own (policy.ts). */
function lifecycleFeedOf(principal: Principal): string {
  const owner = lifecycleFeedOwner(principal);
  return owner === null ? LIFECYCLE_FEED : ownerFeedId(owner);
}

/** The stream a listed id reads: the id itself, or (for `@sessions`) the principal's feed. */
function sourceOf(principal: Principal, id: string): string {
  return id === LIFECYCLE_FEED ? lifecycleFeedOf(principal) : id;
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
  const view = lifecycleView(principal);
  await Promise.all(
    entries.map((entry) => {
      if (!mayRead(principal, entry.id, entry.info)) {
        connection.refuseSession(entry.id);
        return Promise.resolve();
      }
      return connection.addSession(
        sourceOf(principal, entry.id),
        entry.index,
        entry.start,
        entry.info,
        entry.id === LIFECYCLE_FEED ? view : null,
        entry.id === LIFECYCLE_FEED ? null : readIncarnation(principal, entry.id, entry.info),
      );
    }),
  );
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

/** `GET /api/v1/stream?sessions=…|subscription=…`: two endpoints on one path, chosen by the query. */
export async function serveMultiplexedStream(context: AppContext, stream: StreamRequest): Promise<void> {
  const { sessions, subscription } = stream.query;
  if ((sessions === undefined) === (subscription === undefined)) {
    throw errors.badRequest("invalid_request", "give exactly one of `sessions` or `subscription`");
  }
  if (context.state.draining) throw errors.draining();
  const principal = requireScope(stream.principal, "subscribe");
  if (sessions !== undefined) await serveSessionList(context, stream, principal, sessions);
  else await serveSubscription(context, stream, principal, subscription);
}

interface Opening {
  kind: "sessions" | "subscription";
  tracker: CursorTracker;
  resumed: boolean;
  closeWhenAllEnded: boolean;
  ids: string[];
  subscription?: string;
}

/** What both endpoints share: the connection places, the stream's head, and `connected`. */
async function openMultiplexed(
  context: AppContext,
  stream: StreamRequest,
  principal: Principal,
  opening: Opening,
): Promise<StreamConnection> {
  const admission = await admitConnection(context, principal, stream.ip);
  if (opening.resumed)
    context.metrics.resumes.inc({ kind: opening.kind === "sessions" ? "multiplexed" : "subscription" });
  context.metrics.sessionsPerConnection.observe(opening.ids.length);
  const connection = startStream(context, stream, {
    kind: "multiplexed",
    framing: "mux",
    closeWhenAllEnded: opening.closeWhenAllEnded,
    tracker: opening.tracker,
    admission,
  });
  const connected = { connectionId: admission.connectionId, sessions: opening.ids };
  connection.send(
    plainFrame(
      "connected",
      opening.subscription ? { ...connected, subscription: opening.subscription } : connected,
    ),
  );
  return connection;
}

/** `?sessions=a,b,c`: a fixed list; the connection closes once every session has ended. */
async function serveSessionList(
  context: AppContext,
  stream: StreamRequest,
  principal: Principal,
  list: unknown,
): Promise<void> {
  const ids = parseSessionList(list, context.config.maxSessionsPerConnection);
  const tracker = readCursor(stream, ids.length - 1, ids.length);
  const infos = await infosOf(context, ids);
  const entries: Entry[] = ids.map((id, index) => ({
    id,
    index,
    info: infos[index]!,
    start: startOf(tracker, index, infos[index]!, id),
  }));
  const readable = entries.filter((entry) => mayRead(principal, entry.id, entry.info));
  // As for one session: none readable is answered as none existing (whether they exist or not).
  if (readable.length === 0) throw errors.notFound("no session on this list exists for this token");
  const endless = ids.includes(LIFECYCLE_FEED);
  if (tracker && !endless && readable.every((entry) => entry.start.kind === "finished")) {
    endEmpty(stream, 204);
    return;
  }
  const connection = await openMultiplexed(context, stream, principal, {
    kind: "sessions",
    tracker: tracker ?? new CursorTracker(),
    resumed: tracker !== null,
    closeWhenAllEnded: !endless,
    ids,
  });
  await addEntries(connection, principal, entries);
  connection.sessionsAdded();
}

/** `?subscription=sid`: a server-side set, followed as it changes (on any instance); stays open. */
async function serveSubscription(
  context: AppContext,
  stream: StreamRequest,
  principal: Principal,
  subscription: unknown,
): Promise<void> {
  const { config, metrics, subscriptions } = context;
  if (typeof subscription !== "string" || !SESSION_ID_PATTERN.test(subscription)) {
    throw errors.badRequest("invalid_subscription_id", "subscription: must match ^[A-Za-z0-9_-]{1,64}$");
  }
  const resumed = resumeId(stream.req, stream.query) !== undefined;
  const tracker =
    readCursor(stream, MAX_SUBSCRIPTION_INDEX, config.maxSessionsPerSubscription * 2) ?? new CursorTracker();
  // Follow before reading the set: a change made in between is then applied (idempotently) too.
  const changes: SubscriptionChange[] = [];
  let onChange: (change: SubscriptionChange) => void = (change) => {
    changes.push(change);
  };
  const unfollow = await subscriptions.follow(subscription, (change) => onChange(change));
  let connection: StreamConnection | undefined;
  let members: Map<string, number> | null = null;
  try {
    members = await subscriptions.get(subscription);
    if (!members) throw errors.notFound(`no subscription ${subscription}`);
    if (!mayUseSubscription(principal, await subscriptions.owner(subscription))) {
      throw authError("forbidden", "this subscription set belongs to another subject");
    }
    connection = await openMultiplexed(context, stream, principal, {
      kind: "subscription",
      tracker,
      resumed,
      closeWhenAllEnded: false,
      ids: [...members.keys()],
      subscription,
    });
  } finally {
    if (!connection) unfollow();
  }
  const open = connection;
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
  if (stream.res.destroyed) stopFollowing();
  else stream.res.on("close", stopFollowing);
  await subscriptions.touch(subscription);
  const addAll = async (added: Array<{ id: string; index: number }>) => {
    const infos = await infosOf(
      context,
      added.map((entry) => entry.id),
    );
    await addEntries(
      open,
      principal,
      added.map((entry, i) => ({
        ...entry,
        info: infos[i]!,
        start: startOf(tracker, entry.index, infos[i]!, entry.id),
      })),
    );
  };
  await addAll([...members!.entries()].map(([id, index]) => ({ id, index })));
  const apply = (change: SubscriptionChange) => {
    for (const id of change.remove) open.removeSession(sourceOf(principal, id));
    open.send(plainFrame("subscribed", { add: change.add.map((entry) => entry.id), remove: change.remove }));
    addAll(change.add).catch((error: unknown) =>
      context.logger.warn({ err: error }, "could not add sessions"),
    );
  };
  for (const change of changes) apply(change);
  onChange = apply;
  open.sessionsAdded();
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
