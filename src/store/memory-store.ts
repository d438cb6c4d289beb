/**
 * The embedded store for a single instance without Redis. It keeps the same semantics as the Redis
 * store (positions, trimming with gaps, atomic terminal append, expiry, leases), so one contract
 * suite holds for both.
 */
import type { KeyScheme } from "./keys.js";
import { createNotifier, formatNotice } from "./notices.js";
import { comparePositions } from "./positions.js";
import type { PubSub } from "./pubsub.js";
import { lifecycleEventsFor, type RetentionOptions } from "./session-fields.js";
import {
  type AppendOptions,
  type AppendOutcome,
  type EventInput,
  LIFECYCLE_FEED,
  rateWindowIndex,
  type SessionInfo,
  type SessionStatus,
  type StoredEvent,
  type StreamStore,
  TERMINAL_TYPES,
} from "./types.js";

interface MemorySession {
  info: SessionInfo;
  events: StoredEvent[];
  /** Position of the newest event removed by trimming ("" when none). */
  maxDeletedId: string;
  lastMs: number;
  lastSeq: number;
  expiresAtMs: number;
  writerSeqs: Map<string, number>;
}

export interface MemoryStoreDeps {
  pubsub: PubSub;
  keys: KeyScheme;
  retention: RetentionOptions;
  clock?: () => number;
}

export function createMemoryStore({
  pubsub,
  keys,
  retention,
  clock = Date.now,
}: MemoryStoreDeps): StreamStore {
  const sessions = new Map<string, MemorySession>();
  const leases = new Map<string, { holderId: string; expiresAtMs: number }>();
  const leaseIndex = new Map<string, number>();
  const publishCounts = new Map<string, { window: number; events: number }>();

  function overRate(sessionId: string, count: number, rateLimit: AppendOptions["rateLimit"]): boolean {
    if (!rateLimit) return false;
    const window = rateWindowIndex(clock(), rateLimit);
    const current = publishCounts.get(sessionId);
    const events = (current?.window === window ? current.events : 0) + count;
    publishCounts.set(sessionId, { window, events });
    return events > rateLimit.events;
  }

  function live(id: string): MemorySession | undefined {
    const session = sessions.get(id);
    if (session && session.expiresAtMs <= clock()) {
      sessions.delete(id);
      publishCounts.delete(id);
      return undefined;
    }
    return session;
  }

  function leaseHeld(id: string): boolean {
    const lease = leases.get(id);
    if (lease && lease.expiresAtMs <= clock()) leases.delete(id);
    return leases.has(id);
  }

  function nextId(session: MemorySession): string {
    const now = clock();
    if (now > session.lastMs) {
      session.lastMs = now;
      session.lastSeq = 0;
    } else {
      session.lastSeq += 1;
    }
    return `${session.lastMs}-${session.lastSeq}`;
  }

  function appendNow(
    sessionId: string,
    events: readonly EventInput[],
    options: AppendOptions,
  ): AppendOutcome {
    const isFeed = sessionId === LIFECYCLE_FEED;
    if (overRate(sessionId, events.length, options.rateLimit)) return { kind: "limited" };
    let session = live(sessionId);
    let created = false;
    if (!session) {
      const creation = isFeed
        ? { id: sessionId, model: null, metadata: {}, owner: null, createdAt: clock() }
        : options.createIfMissing;
      if (!creation) return { kind: "missing" };
      session = {
        info: { ...creation, status: "running", lastEventId: null, terminalId: null },
        events: [],
        maxDeletedId: "",
        lastMs: 0,
        lastSeq: 0,
        expiresAtMs: Number.POSITIVE_INFINITY,
        writerSeqs: new Map(),
      };
      sessions.set(sessionId, session);
      created = true;
    }
    if (session.info.status !== "running") return { kind: "ended", status: session.info.status };
    if (options.requireNoLease && leaseHeld(sessionId)) return { kind: "leased" };
    if (options.writer) {
      const applied = session.writerSeqs.get(options.writer.writerId) ?? 0;
      if (options.writer.seq <= applied) return { kind: "duplicate" };
      if (options.writer.seq !== applied + 1) return { kind: "out_of_order" };
      session.writerSeqs.set(options.writer.writerId, options.writer.seq);
    }
    const idleExpiry = isFeed ? Number.POSITIVE_INFINITY : clock() + retention.idleSessionTtlSeconds * 1000;
    if (events.length === 0) {
      session.expiresAtMs = idleExpiry;
      return {
        kind: "appended",
        ids: [],
        prevId: session.info.lastEventId ?? "",
        ended: false,
        created,
        owner: session.info.owner,
      };
    }

    const prevId = session.info.lastEventId ?? "";
    const stored: StoredEvent[] = events.map((event) => ({
      id: nextId(session),
      type: event.type,
      data: JSON.stringify(event.data),
    }));
    session.events.push(...stored);
    const maxEvents = isFeed ? retention.lifecycleMaxEvents : retention.maxEventsPerSession;
    if (session.events.length > maxEvents) {
      const removed = session.events.splice(0, session.events.length - maxEvents);
      session.maxDeletedId = removed[removed.length - 1]!.id;
    }
    const last = stored[stored.length - 1]!;
    session.info.lastEventId = last.id;
    const ended = TERMINAL_TYPES.has(last.type);
    if (ended) {
      session.info.status = last.type as SessionStatus;
      session.info.terminalId = last.id;
      session.expiresAtMs = clock() + retention.endedSessionTtlSeconds * 1000;
      leases.delete(sessionId);
    } else {
      session.expiresAtMs = idleExpiry;
    }
    void pubsub.publish(keys.notices(sessionId), formatNotice(prevId, stored));
    return {
      kind: "appended",
      ids: stored.map((event) => event.id),
      prevId,
      ended,
      created,
      owner: session.info.owner,
    };
  }

  const store: StreamStore = {
    kind: "memory",
    notifier: createNotifier(pubsub, keys),
    isReady: () => true,

    async createSession(session) {
      const outcome = await store.append(session.id, [], { createIfMissing: session });
      return outcome.kind === "appended" && outcome.created;
    },

    async getSession(id) {
      const session = live(id);
      return session ? structuredClone(session.info) : null;
    },

    async append(sessionId, events, options = {}) {
      const outcome = appendNow(sessionId, events, options);
      const lifecycle = lifecycleEventsFor(sessionId, events, options, outcome);
      if (lifecycle.length > 0) appendNow(LIFECYCLE_FEED, lifecycle, {});
      return outcome;
    },

    async read(sessionId, after, count) {
      const session = live(sessionId);
      if (!session) return { events: [], gap: null };
      const events = session.events;
      let start = 0;
      if (after !== null) {
        // Binary search: positions only grow.
        let low = 0;
        let high = events.length;
        while (low < high) {
          const middle = (low + high) >>> 1;
          if (comparePositions(events[middle]!.id, after) <= 0) low = middle + 1;
          else high = middle;
        }
        start = low;
      }
      const gap =
        after !== null && session.maxDeletedId !== "" && comparePositions(after, session.maxDeletedId) < 0
          ? { requested: after, oldest: events[0]?.id ?? null }
          : null;
      // Copies, as a Redis read returns: readers cache encoded frames on the event objects they get
      // (src/sse/frames.ts), and those caches must not stay on the stored history.
      const copies = events
        .slice(start, start + count)
        .map((event): StoredEvent => ({ id: event.id, type: event.type, data: event.data }));
      return { events: copies, gap };
    },

    async holdLease(sessionId, holderId, ttlMs) {
      leases.set(sessionId, { holderId, expiresAtMs: clock() + ttlMs });
      leaseIndex.set(sessionId, clock() + ttlMs);
    },

    async releaseLease(sessionId) {
      leases.delete(sessionId);
      leaseIndex.delete(sessionId);
    },

    async expiredLeases(nowMs, limit) {
      const expired: string[] = [];
      for (const [id, expiresAtMs] of leaseIndex) {
        if (expiresAtMs <= nowMs) expired.push(id);
        if (expired.length >= limit) break;
      }
      return expired;
    },

    async forgetLease(sessionId) {
      leaseIndex.delete(sessionId);
    },

    async close() {
      await pubsub.close();
    },
  };
  return store;
}
