/**
 * Durable acknowledgements (REDIS_WAIT_REPLICAS): an append counts as stored only once `replicas`
 * replicas confirm they hold it, by Redis `WAIT`. A `WAIT` covers every write its connection sent
 * before it, and the primary's replication stream is one ordered log, so it also covers every write
 * the primary applied before those. Appends therefore share WAITs: one in flight when an append's
 * reply arrives was sent after that append (a connection's replies come in the order Redis ran its
 * commands), so it covers it; otherwise a new one is sent. Under load one WAIT confirms every append
 * queued behind the previous one.
 *
 * On a Redis Cluster the same holds per primary (`src/backend/cluster-wait.ts`): a write is sent on the
 * connection of the primary owning its key, and its confirmation is a WAIT on that same connection.
 */
import type { Redis } from "ioredis";

export class UnconfirmedAppendError extends Error {
  override readonly name = "UnconfirmedAppendError";
  constructor(
    readonly replicas: number,
    readonly confirmed: number,
  ) {
    super(
      `stored on the Redis primary, but ${confirmed} of the ${replicas} replicas REDIS_WAIT_REPLICAS asks for confirmed it in time; retry with the same Idempotency-Key`,
    );
  }
}

export interface ReplicaWaitOptions {
  /** The connection the appends are written on (a WAIT covers that connection's writes). */
  connection: Redis;
  replicas: number;
  /** One WAIT's bound: past it, the appends it would confirm fail with UnconfirmedAppendError. */
  timeoutMs: number;
  /** Each WAIT's time and whether enough replicas confirmed (metrics, logs). */
  observe?(seconds: number, confirmed: boolean, acknowledged: number): void;
}

/** A write's reply, and the confirmation that covers it. */
export interface Written<T> {
  readonly reply: T;
  /**
   * Resolves when `replicas` replicas hold the write (and everything its primary applied before it);
   * rejects with UnconfirmedAppendError when fewer confirm within the timeout (on a cluster, also when
   * the write's connection is lost: its WAIT cannot be sent anywhere else).
   */
  confirm(): Promise<void>;
}

/** Where durable writes go, and how they are confirmed. */
export interface DurableWrites {
  readonly replicas: number;
  /** The one connection every write goes on, when there is one (one Redis). */
  readonly connection?: Redis;
  /**
   * Sends `write` on the connection of the primary owning `key` (one Redis: the appender connection)
   * and returns its reply with the WAIT that covers it: the same connection's.
   */
  send<T>(key: string, write: (connection: Redis) => Promise<T>): Promise<Written<T>>;
}

export interface ReplicaWait extends DurableWrites {
  readonly connection: Redis;
  /**
   * Call once an append's reply has arrived: resolves when `replicas` replicas hold it (and everything
   * written before it), rejects with UnconfirmedAppendError when fewer confirm within the timeout.
   */
  confirm(): Promise<void>;
}

export function createReplicaWait({
  connection,
  replicas,
  timeoutMs,
  observe,
}: ReplicaWaitOptions): ReplicaWait {
  let inFlight: Promise<number> | null = null;

  function send(): Promise<number> {
    const started = performance.now();
    const pending = connection.wait(replicas, timeoutMs);
    inFlight = pending;
    // Attached first, so the WAIT is forgotten before any append whose reply follows it looks for one.
    pending.then(
      (acknowledged) => {
        if (inFlight === pending) inFlight = null;
        observe?.((performance.now() - started) / 1000, acknowledged >= replicas, acknowledged);
      },
      () => {
        if (inFlight === pending) inFlight = null;
      },
    );
    return pending;
  }

  async function confirm(): Promise<void> {
    const acknowledged = await (inFlight ?? send());
    if (acknowledged < replicas) throw new UnconfirmedAppendError(replicas, acknowledged);
  }

  return {
    replicas,
    connection,
    confirm,
    async send(_key, write) {
      return { reply: await write(connection), confirm };
    },
  };
}
