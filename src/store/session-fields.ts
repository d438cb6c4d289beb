/** How a session's metadata is laid out in a flat hash, and the lifecycle events about it. */
import { createHash } from "node:crypto";
import {
  type AppendOptions,
  type AppendOutcome,
  type EventInput,
  LIFECYCLE_FEED,
  type NewSession,
  type SessionInfo,
  type SessionStatus,
} from "./types.js";

export interface RetentionOptions {
  maxEventsPerSession: number;
  lifecycleMaxEvents: number;
  endedSessionTtlSeconds: number;
  idleSessionTtlSeconds: number;
  /** How long the first reply of an append is kept, so a repeat of its request id answers it again. */
  requestRecordTtlSeconds: number;
}

const STATUSES: ReadonlySet<string> = new Set(["running", "done", "error", "cancelled"]);

export function sessionCreationFields(session: NewSession): string[] {
  const fields = ["status", "running", "createdAt", String(session.createdAt)];
  if (session.model !== null) fields.push("model", session.model);
  fields.push("metadata", JSON.stringify(session.metadata));
  if (session.owner !== null) fields.push("owner", session.owner);
  if (session.fingerprint !== undefined) fields.push("fp", session.fingerprint);
  return fields;
}

export function sessionFromHash(id: string, hash: Record<string, string>): SessionInfo | null {
  const status = hash.status;
  if (status === undefined || !STATUSES.has(status)) return null;
  return {
    id,
    status: status as SessionStatus,
    createdAt: Number(hash.createdAt ?? 0),
    model: hash.model ?? null,
    metadata: parseMetadata(hash.metadata),
    owner: hash.owner ?? null,
    lastEventId: hash.last ?? null,
    terminalId: hash.terminal ?? null,
    ...(hash.fp !== undefined ? { fingerprint: hash.fp } : {}),
  };
}

function parseMetadata(text: string | undefined): Record<string, unknown> {
  if (!text) return {};
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

/**
 * The lifecycle feed of one owner (a subject): the entries of the sessions it owns, besides the shared
 * feed (`@sessions`). Per owner so that no tenant's sessions push another's entries out: a subject
 * without a `sessions` claim reads its own feed (http/multiplex.ts). Named by a hash of the subject,
 * so no token text goes into a key.
 */
export function ownerFeedId(owner: string): string {
  return `${LIFECYCLE_FEED}~${createHash("sha256").update(owner).digest("base64url").slice(0, 22)}`;
}

/** The shared lifecycle feed, or an owner's: a stream of `created`/`ended` entries, never a session. */
export function isLifecycleFeed(id: string): boolean {
  return (
    id.startsWith(LIFECYCLE_FEED) &&
    (id.length === LIFECYCLE_FEED.length || id[LIFECYCLE_FEED.length] === "~")
  );
}

/** The feeds an append's lifecycle entries go to: the shared one, and its owner's. */
export function lifecycleFeedsOf(owner: string | null): string[] {
  return owner === null ? [LIFECYCLE_FEED] : [LIFECYCLE_FEED, ownerFeedId(owner)];
}

export const lifecycleEvent = {
  created(session: NewSession): EventInput {
    return {
      type: "created",
      data: {
        id: session.id,
        model: session.model,
        metadata: session.metadata,
        createdAt: new Date(session.createdAt).toISOString(),
        ...(session.owner !== null ? { owner: session.owner } : {}),
      },
    };
  },
  ended(id: string, status: SessionStatus, owner: string | null): EventInput {
    return { type: "ended", data: { id, status, ...(owner !== null ? { owner } : {}) } };
  },
};

/**
 * What an append announces on the lifecycle feed (the session's creation and its end, if it did either),
 * with a request id of its own: one per session incarnation and kind, so announcing twice (an append
 * replayed after a lost reply) writes once.
 */
export function lifecycleAppendFor(
  sessionId: string,
  events: readonly EventInput[],
  options: AppendOptions | undefined,
  outcome: AppendOutcome,
): { events: EventInput[]; requestId: string } | null {
  if (outcome.kind !== "appended" || isLifecycleFeed(sessionId)) return null;
  const lifecycle: EventInput[] = [];
  let kinds = "";
  if (outcome.created && options?.createIfMissing) {
    lifecycle.push(lifecycleEvent.created({ ...options.createIfMissing, createdAt: outcome.createdAt }));
    kinds += "c";
  }
  const terminal = outcome.ended ? events[events.length - 1] : undefined;
  if (terminal) {
    lifecycle.push(lifecycleEvent.ended(sessionId, terminal.type as SessionStatus, outcome.owner));
    kinds += "e";
  }
  return kinds === "" ? null : { events: lifecycle, requestId: `${sessionId}.${outcome.createdAt}.${kinds}` };
}
