import { detached } from "../detached.js";
import { randomId } from "../random-id.js";
import type { KeyScheme } from "./keys.js";
import { createNotifier } from "./notices.js";
import { createPendingAnnouncements } from "./pending-announcements.js";
import type { PubSub } from "./pubsub.js";
import type { RedisClient } from "./redis-client.js";
import type { DurableWrites } from "./replica-wait.js";
import { type ScriptCall, script } from "./scripts.js";
import {
  isLifecycleFeed,
  lifecycleAppendFor,
  lifecycleFeedsOf,
  type RetentionOptions,
  sessionCreationFields,
  sessionFromHash,
} from "./session-fields.js";
import {
  type AppendOptions,
  type AppendOutcome,
  type EventInput,
  LIFECYCLE_FEED,
  type NewSession,
  type ReadResult,
  rateWindowIndex,
  type SessionStatus,
  type StoredEvent,
  type StreamStore,
} from "./types.js";

export interface RedisStoreDeps {
  /** The instance's shared command connection, or its Redis Cluster client (the store does not close it). */
  redis: RedisClient;
  pubsub: PubSub;
  /**
   * The command the append script announces a batch with: `PUBLISH` (one Redis), or `SPUBLISH` on a
   * Redis Cluster, so a notice goes only to the shard owning the session (its channel shares the
   * session's hash tag) instead of to every node over the cluster bus.
   */
  publishCommand?: "PUBLISH" | "SPUBLISH";
  /**
   * Durable acknowledgements (REDIS_WAIT_REPLICAS): appends are written through it (on one Redis, its
   * own connection; on a cluster, the connection of the primary owning the session), and an append
   * resolves, and its notice is published, only once the replicas confirm it; reads go no further
   * than what they confirmed. Without it an append is acknowledged once the primary holds it.
   */
  replicaWait?: DurableWrites;
  keys: KeyScheme;
  retention: RetentionOptions;
  clock?: () => number;
  /** Told of a write nobody waits for that failed: a creation's announcement on the lifecycle feed. */
  onLateFailure?: (error: unknown, sessionId: string) => void;
}

export function createRedisStore({
  redis,
  pubsub,
  keys,
  retention,
  publishCommand = "PUBLISH",
  replicaWait,
  clock = Date.now,
  onLateFailure = () => {},
}: RedisStoreDeps): StreamStore {
  const appendScript = script<unknown[]>(redis, "append-8");
  // A run's creation and appends are written at once (a run's first token waits for them); they are
  // ordered among themselves, and nothing they carry depends on a pipelined command of the same turn.
  const appendAtOnce = script<unknown[]>(redis, "append-8", { atOnce: true });
  // With durable acknowledgements: on the connection `replicaWait` picks (defined once per connection).
  const appendOn = (connection: RedisClient): ScriptCall<unknown[]> => script(connection, "append-8");
  const heldOn = (connection: RedisClient): ScriptCall<number> => script(connection, "held-3");
  // Defined up front on one Redis's appender, which auto-pipelines: ioredis's pipeline for the current
  // tick, if made before a command was defined, lacks it, and the call crashes the process.
  if (replicaWait?.connection) {
    appendOn(replicaWait.connection);
    heldOn(replicaWait.connection);
  }
  // On the command connection: the appender stays free for appends and WAITs (a WAIT holds it).
  const confirmScript = replicaWait ? script<number>(redis, "confirm-1") : null;
  const readUpToConfirmed = replicaWait ? "1" : "0";
  const unannounced = replicaWait ? createPendingAnnouncements() : null;
  const readScript = script<[string | null, string, string | null, string | null]>(redis, "read-5");

  async function appendTo(
    sessionId: string,
    events: readonly EventInput[],
    options: AppendOptions = {},
  ): Promise<AppendOutcome> {
    const isFeed = isLifecycleFeed(sessionId);
    // Without a writer's sequence, a random request id makes the append safe to re-send.
    const requestId = options.requestId ?? (options.writer ? "" : newRequestId());
    const args: Array<string | number> = [
      keys.events(sessionId),
      keys.meta(sessionId),
      keys.lease(sessionId),
      keys.publishRate(sessionId, rateWindowIndex(clock(), options.rateLimit)),
      keys.request(sessionId, requestId),
      keys.snapshot(sessionId),
      keys.snapshotContent(sessionId),
      keys.snapshotReasoning(sessionId),
      isFeed ? retention.lifecycleMaxEvents : retention.maxEventsPerSession,
      retention.endedSessionTtlSeconds,
      // The shared feed never expires; an owner's goes when its owner has been idle as long as a session.
      sessionId === LIFECYCLE_FEED ? 0 : retention.idleSessionTtlSeconds,
      keys.notices(sessionId),
      options.writer?.writerId ?? "",
      options.writer?.seq ?? 0,
      isFeed
        ? JSON.stringify(["status", "running", "createdAt", "0"])
        : options.createIfMissing
          ? JSON.stringify(sessionCreationFields(options.createIfMissing))
          : "",
      options.requireNoLease ? "1" : "0",
      clock(),
      options.rateLimit?.events ?? 0,
      options.rateLimit?.windowSeconds ?? 1,
      requestId,
      retention.requestRecordTtlSeconds,
      options.fingerprint ?? "",
      // The lifecycle feed is trimmed without a snapshot: its readers are told what they missed.
      isFeed ? "0" : "1",
      // With durable acknowledgements the batch is announced once confirmed, below.
      replicaWait ? "" : publishCommand,
    ];
    for (const event of events) args.push(event.type, JSON.stringify(event.data));
    if (!replicaWait) {
      const send = options.writer || options.createIfMissing ? appendAtOnce : appendScript;
      return parseAppendReply(await send(...args));
    }
    const written = await replicaWait.send(keys.meta(sessionId), (connection) =>
      appendOn(connection)(...args),
    );
    const reply = written.reply;
    const outcome = parseAppendReply(reply);
    if (outcome.kind === "appended" || outcome.kind === "duplicate") {
      // A replayed batch is announced again: its first try may have failed before its notice went out
      // (a notice heard twice delivers nothing the second time).
      const announce =
        outcome.kind === "appended" && outcome.ids.length > 0
          ? () =>
              confirmScript!(
                keys.meta(sessionId),
                outcome.ids[outcome.ids.length - 1]!,
                keys.notices(sessionId),
                noticeOf(reply, events, args),
                publishCommand,
              )
          : null;
      const newest = outcome.kind === "appended" ? outcome.ids[outcome.ids.length - 1] : undefined;
      try {
        // A batch answered from its request record was written earlier, maybe through another
        // connection (another instance, the primary before a failover), which this connection's WAIT
        // does not cover: its primary proves it holds the batch, and the WAIT follows that proof.
        if (outcome.kind === "appended" && outcome.replayed && newest !== undefined) {
          if (!(await confirmHeld(sessionId, newest))) await written.confirm();
        } else {
          await written.confirm();
        }
      } catch (error) {
        // Stored, not confirmed: the caller is told; the batch is announced once a later WAIT confirms it.
        if (announce && newest !== undefined) {
          unannounced!.add(sessionId, announce, () => confirmHeld(sessionId, newest));
        }
        throw error;
      }
      if (announce) await announce();
    }
    return outcome;
  }

  /**
   * Confirms a batch again, away from its append: `held-3.lua` proves the session's primary (now) holds
   * its newest event and writes, and a WAIT after that write, on the same connection, proves it on the
   * replicas. False when that primary does not hold it (lost in a failover: never to be announced);
   * rejects when the replicas do not confirm in time.
   */
  async function confirmHeld(sessionId: string, newest: string): Promise<boolean> {
    const written = await replicaWait!.send(keys.meta(sessionId), (connection) =>
      heldOn(connection)(keys.events(sessionId), keys.snapshot(sessionId), keys.meta(sessionId), newest),
    );
    if (written.reply !== 1) return false;
    await written.confirm();
    return true;
  }

  /**
   * A read held back by the confirmed position: events after it are usually a batch whose WAIT is
   * still in flight, but may be one whose confirmation was lost (a failover right after it, an
   * instance that died between its WAIT and its announcement), which nothing would ever confirm again
   * and a reader would wait for forever. So the position is confirmed anew up to `last`, the position
   * the read saw (confirmHeld). False (the read stands) when that fails.
   */
  async function confirmUpTo(sessionId: string, last: string): Promise<boolean> {
    try {
      if (!(await confirmHeld(sessionId, last))) return false;
      await confirmScript!(keys.meta(sessionId), last, keys.notices(sessionId), "", publishCommand);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Writes a creation or an end to the lifecycle feeds. A separate step: the feeds live in other
   * Cluster slots than the session's keys. Each feed's append is sent before this returns, so it is
   * ordered ahead of any later command of this instance.
   */
  async function announceLifecycle(
    sessionId: string,
    events: readonly EventInput[],
    options: AppendOptions | undefined,
    outcome: AppendOutcome,
  ): Promise<void> {
    const lifecycle = lifecycleAppendFor(sessionId, events, options, outcome);
    if (!lifecycle || outcome.kind !== "appended") return;
    await Promise.all(
      lifecycleFeedsOf(outcome.owner).map((feed) =>
        appendTo(feed, lifecycle.events, { requestId: lifecycle.requestId }),
      ),
    );
  }

  const store: StreamStore = {
    kind: "redis",
    notifier: createNotifier(pubsub, keys),
    isReady: () => redis.status === "ready",

    async createSession(session: NewSession) {
      const creation = { createIfMissing: session };
      const outcome = await appendTo(session.id, [], creation);
      const announced = announceLifecycle(session.id, [], creation, outcome);
      // The announcement is already sent, ahead of any later command of this instance, so a reader
      // told of the session finds it on the feed. Only durable acknowledgements wait for it: there,
      // a feed entry is readable once confirmed. Elsewhere the session exists now, and a run's head
      // need not wait one more round trip for the feed.
      if (replicaWait) await announced;
      else announced.catch((error: unknown) => onLateFailure(error, session.id));
      return outcome.kind === "appended" && outcome.created;
    },

    async getSession(id) {
      const hash = await redis.hgetall(keys.meta(id));
      return sessionFromHash(id, hash);
    },

    async append(sessionId, events, options) {
      const outcome = await appendTo(sessionId, events, options);
      await announceLifecycle(sessionId, events, options, outcome);
      return outcome;
    },

    async read(sessionId, after, count): Promise<ReadResult> {
      const readNow = () =>
        readScript(
          keys.events(sessionId),
          keys.snapshot(sessionId),
          keys.snapshotContent(sessionId),
          keys.snapshotReasoning(sessionId),
          keys.meta(sessionId),
          after === null ? "-" : `(${after}`,
          count,
          after ?? "",
          readUpToConfirmed,
        );
      let [gapOldest, text, createdAt, beyond] = await readNow();
      if (replicaWait && typeof beyond === "string" && (await confirmUpTo(sessionId, beyond))) {
        [gapOldest, text, createdAt] = await readNow();
      }
      const events = parseEventLines(text);
      const gap =
        after !== null && typeof gapOldest === "string"
          ? { requested: after, oldest: gapOldest === "" ? null : gapOldest }
          : null;
      return { events, gap, createdAt: createdAt === null ? null : Number(createdAt) };
    },

    // The lease (the session's slot) and the lease index (its own slot) are two commands, not one
    // pipeline: a Cluster pipeline must stay within one node. Auto-pipelining still sends them in one
    // write on one Redis; each means the same when applied twice.
    async holdLease(sessionId, holderId, ttlMs) {
      await Promise.all([
        redis.set(keys.lease(sessionId), holderId, "PX", ttlMs),
        redis.zadd(keys.leaseIndex(), clock() + ttlMs, sessionId),
      ]);
    },

    async releaseLease(sessionId) {
      await Promise.all([redis.del(keys.lease(sessionId)), redis.zrem(keys.leaseIndex(), sessionId)]);
    },

    async expiredLeases(nowMs, limit) {
      return redis.zrangebyscore(keys.leaseIndex(), "-inf", nowMs, "LIMIT", 0, limit);
    },

    async forgetLease(sessionId) {
      await redis.zrem(keys.leaseIndex(), sessionId);
    },

    async close() {
      unannounced?.close();
      await pubsub.close();
    },
  };
  return store;
}

/**
 * The notice the append script would have published (notices.ts's form): the reply's previous position
 * and creation stamp as the script wrote them, then each event's id, type and JSON text as sent.
 */
function noticeOf(
  reply: unknown[],
  events: readonly EventInput[],
  args: ReadonlyArray<string | number>,
): string {
  const firstData = args.length - events.length * 2 + 1;
  let text = `${String(reply[4])}\t${String(reply[5])}`;
  for (let i = 0; i < events.length; i++) {
    text += `\n${String(reply[7 + i])}\t${events[i]!.type}\t${String(args[firstData + i * 2])}`;
  }
  return text;
}

/** Key-safe and unguessable: names one append for exactly-once. */
function newRequestId(): string {
  return randomId(12);
}

/** The read script's events: one line per event, `id \t type \t data` (data is JSON: no raw tab or newline). */
function parseEventLines(text: string): StoredEvent[] {
  const events: StoredEvent[] = [];
  let start = 0;
  while (start < text.length) {
    const firstTab = text.indexOf("\t", start);
    const secondTab = text.indexOf("\t", firstTab + 1);
    let end = text.indexOf("\n", secondTab + 1);
    if (end < 0) end = text.length;
    events.push({
      // Detached: a reader keeps its last position (and cursor entry) as long as its connection lives.
      id: detached(text.slice(start, firstTab)),
      type: text.slice(firstTab + 1, secondTab),
      data: text.slice(secondTab + 1, end),
    });
    start = end + 1;
  }
  return events;
}

function parseAppendReply(reply: unknown[]): AppendOutcome {
  switch (reply[0]) {
    case "appended":
      return {
        kind: "appended",
        created: reply[1] === 1,
        ended: reply[2] === 1,
        owner: reply[3] === "" ? null : (reply[3] as string),
        prevId: reply[4] as string,
        createdAt: Number(reply[5]),
        replayed: reply[6] === 1,
        ids: reply.slice(7) as string[],
      };
    case "duplicate":
      return { kind: "duplicate" };
    case "out_of_order":
      return { kind: "out_of_order" };
    case "missing":
      return { kind: "missing" };
    case "ended":
      return { kind: "ended", status: reply[1] as SessionStatus };
    case "leased":
      return { kind: "leased" };
    case "limited":
      return { kind: "limited" };
    case "key_reused":
      return { kind: "key_reused" };
    default:
      throw new Error(`unexpected append reply: ${String(reply[0])}`);
  }
}
