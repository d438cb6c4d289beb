/**
 * Durable acknowledgements (REDIS_WAIT_REPLICAS): batches the primary applied but the replicas did not
 * confirm in time. Their writers were told (a producer's 503; a run sends its batch again), yet the
 * batch stays stored, and its announcement must not depend on a retry that may never come: a
 * sweeper's terminal event is not sent again, a producer may give up. So the latest such batch of
 * each session waits here and is announced (confirmed position raised, notice published) once it is
 * confirmed again: its primary proves it holds the batch and a WAIT after that proof confirms it
 * (concurrent confirmations on one connection share that WAIT). A batch its primary no longer holds
 * (lost in a failover) is dropped, never announced; readers before a batch read what they missed.
 */

/** How a pending batch is confirmed again: resolves true when confirmed, false when it is lost. */
export type Reconfirm = () => Promise<boolean>;

export interface PendingAnnouncements {
  /** Call once the batch's confirmation failed; `announce` runs once `reconfirm` confirms it. */
  add(sessionId: string, announce: () => Promise<unknown>, reconfirm: Reconfirm): void;
  readonly size: number;
  close(): void;
}

/** Between tries when a confirmation failed (short again, or the connection is down). */
const RETRY_MS = 100;

interface Pending {
  announce(): Promise<unknown>;
  reconfirm: Reconfirm;
}

export function createPendingAnnouncements(): PendingAnnouncements {
  const pending = new Map<string, Pending>();
  let draining = false;
  let closed = false;

  async function drain(): Promise<void> {
    draining = true;
    try {
      while (pending.size > 0 && !closed) {
        const batch = [...pending];
        const outcomes = await Promise.allSettled(batch.map(([, entry]) => entry.reconfirm()));
        let unconfirmed = false;
        for (let i = 0; i < batch.length; i++) {
          const [sessionId, entry] = batch[i]!;
          const outcome = outcomes[i]!;
          if (outcome.status === "rejected") {
            // Short again (the WAIT itself waited its timeout), or the connection is down.
            unconfirmed = true;
            continue;
          }
          if (pending.get(sessionId) === entry) pending.delete(sessionId);
          if (!outcome.value) continue;
          await entry.announce().catch(() => {
            // Not announced (the connection dropped): kept, unless a newer batch took its place.
            unconfirmed = true;
            if (!pending.has(sessionId) && !closed) pending.set(sessionId, entry);
          });
        }
        if (unconfirmed) await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
      }
    } finally {
      draining = false;
    }
  }

  return {
    add(sessionId, announce, reconfirm) {
      if (closed) return;
      pending.set(sessionId, { announce, reconfirm });
      if (!draining) void drain();
    },
    get size() {
      return pending.size;
    },
    close() {
      closed = true;
      pending.clear();
    },
  };
}
