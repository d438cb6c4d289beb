/**
 * The embedded store for a single instance without Redis. It keeps the same semantics as the Redis
 * store (positions, trimming with gaps, atomic terminal append, expiry, leases), so one contract
 * suite holds for both.
 */
import type { KeyScheme } from "./keys.js";
import { createNotifier, formatNotice } from "./notices.js";
import { comparePositions } from "./positions.js";
import type { PubSub } from "./pubsub.js";
import {
  isLifecycleFeed,
  lifecycleAppendFor,
  lifecycleFeedsOf,
  type RetentionOptions,
} from "./session-fields.js";
import { createSnapshot, foldIntoSnapshot, type Snapshot, snapshotEvent } from "./snapshot.js";
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
  /** Each writer's last batch reply, answered again when that batch is re-sent. */
  writerReplies: Map<string, Appended>;
  snapshot: Snapshot | null;
}

type Appended = Extract<AppendOutcome, { kind: "appended" }>;

interface RequestRecord {
  fingerprint: string;
  outcome: Appended;
  expiresAtMs: number;
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
  const requests = new Map<string, RequestRecord>();

  function publishedInWindow(sessionId: string, rateLimit: AppendOptions["rateLimit"]) {
    const window = rateWindowIndex(clock(), rateLimit);
    const current = publishCounts.get(sessionId);
    return { window, events: current?.window === window ? current.events : 0 };
  }

  function recordedRequest(key: string): RequestRecord | undefined {
    const record = requests.get(key);
    if (record && record.expiresAtMs <= clock()) {
      requests.delete(key);
      return undefined;
    }
    return record;
  }

  function keepRequest(key: string, fingerprint: string, outcome: Appended): void {
    const now = clock();
    if (requests.size >= 10_000) {
      for (const [stale, record] of requests) if (record.expiresAtMs <= now) requests.delete(stale);
    }
    requests.set(key, { fingerprint, outcome, expiresAtMs: now + retention.requestRecordTtlSeconds * 1000 });
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
    // Checks first, writes second, as the Redis script does: a refused append changes nothing.
    const requestKey = options.requestId ? `${sessionId}\n${options.requestId}` : null;
    const fingerprint = options.fingerprint ?? "";
    const prior = requestKey ? recordedRequest(requestKey) : undefined;
    if (prior) {
      return prior.fingerprint === fingerprint
        ? { ...prior.outcome, replayed: true }
        : { kind: "key_reused" };
    }
    const isFeed = isLifecycleFeed(sessionId);
    let session = live(sessionId);
    if (options.writer && session) {
      const applied = session.writerSeqs.get(options.writer.writerId) ?? 0;
      const reply = session.writerReplies.get(options.writer.writerId);
      if (options.writer.seq === applied && reply) return { ...reply, replayed: true };
      if (options.writer.seq <= applied) return { kind: "duplicate" };
    }
    const rate = options.rateLimit ? publishedInWindow(sessionId, options.rateLimit) : null;
    if (rate && options.rateLimit && rate.events + events.length > options.rateLimit.events) {
      return { kind: "limited" };
    }
    const creation = isFeed
      ? { id: sessionId, model: null, metadata: {}, owner: null, createdAt: 0 }
      : options.createIfMissing;
    if (!session && !creation) return { kind: "missing" };
    if (session && session.info.status !== "running") return { kind: "ended", status: session.info.status };
    if (options.requireNoLease && leaseHeld(sessionId)) return { kind: "leased" };
    const applied = (options.writer && session?.writerSeqs.get(options.writer.writerId)) ?? 0;
    if (options.writer && options.writer.seq !== applied + 1) return { kind: "out_of_order" };

    if (rate) publishCounts.set(sessionId, { window: rate.window, events: rate.events + events.length });
    let created = false;
    if (!session) {
      session = {
        info: { ...creation!, status: "running", lastEventId: null, terminalId: null },
        events: [],
        maxDeletedId: "",
        lastMs: 0,
        lastSeq: 0,
        expiresAtMs: Number.POSITIVE_INFINITY,
        writerSeqs: new Map(),
        writerReplies: new Map(),
        snapshot: null,
      };
      sessions.set(sessionId, session);
      created = true;
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
      // The lifecycle feed is trimmed without a snapshot: its readers are told what they missed.
      if (!isFeed) {
        session.snapshot ??= createSnapshot();
        foldIntoSnapshot(session.snapshot, removed);
      }
    }
    const last = stored[stored.length - 1];
    let ended = false;
    if (last) {
      session.info.lastEventId = last.id;
      ended = TERMINAL_TYPES.has(last.type);
    }
    if (last && ended) {
      session.info.status = last.type as SessionStatus;
      session.info.terminalId = last.id;
      session.expiresAtMs = clock() + retention.endedSessionTtlSeconds * 1000;
      leases.delete(sessionId);
    } else {
      session.expiresAtMs =
        sessionId === LIFECYCLE_FEED
          ? Number.POSITIVE_INFINITY
          : clock() + retention.idleSessionTtlSeconds * 1000;
    }
    if (stored.length > 0)
      void pubsub.publish(keys.notices(sessionId), formatNotice(prevId, stored, session.info.createdAt));
    const outcome: Appended = {
      kind: "appended",
      ids: stored.map((event) => event.id),
      prevId,
      ended,
      created,
      owner: session.info.owner,
      createdAt: session.info.createdAt,
      replayed: false,
    };
    if (options.writer) {
      session.writerSeqs.set(options.writer.writerId, options.writer.seq);
      session.writerReplies.set(options.writer.writerId, outcome);
    }
    if (requestKey) keepRequest(requestKey, fingerprint, outcome);
    return outcome;
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
      const lifecycle = lifecycleAppendFor(sessionId, events, options, outcome);
      if (lifecycle && outcome.kind === "appended") {
        for (const feed of lifecycleFeedsOf(outcome.owner)) {
          appendNow(feed, lifecycle.events, { requestId: lifecycle.requestId });
        }
      }
      return outcome;
    },

    async read(sessionId, after, count) {
      const session = live(sessionId);
      if (!session) return { events: [], gap: null, createdAt: null };
      const { createdAt } = session.info;
      const events = session.events;
      const snapshot = session.snapshot;
      if (snapshot && (after === null || comparePositions(after, snapshot.last) < 0)) {
        // What was folded comes as the snapshot, then the kept events (all after it).
        const kept = events.slice(0, count).map((event): StoredEvent => ({ ...event }));
        return { events: [snapshotEvent(snapshot), ...kept], gap: null, createdAt };
      }
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
        after !== null &&
        !snapshot &&
        session.maxDeletedId !== "" &&
        comparePositions(after, session.maxDeletedId) < 0
          ? { requested: after, oldest: events[0]?.id ?? null }
          : null;
      // Copies, as a Redis read returns: readers cache encoded frames on the event objects they get
      // (src/sse/frames.ts), and those caches must not stay on the stored history.
      const copies = events
        .slice(start, start + count)
        .map((event): StoredEvent => ({ id: event.id, type: event.type, data: event.data }));
      return { events: copies, gap, createdAt };
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
