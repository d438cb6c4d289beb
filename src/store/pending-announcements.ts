/**
 * Durable acknowledgements (REDIS_WAIT_REPLICAS): batches the primary applied but the replicas did not
 * confirm in time. Their writers were told (a producer's 503; a run sends its batch again), yet the
 * batch stays stored, and its announcement must not depend on a retry that may never come: a
 * sweeper's terminal event is not sent again, a producer may give up. So the latest such batch of
 * each session waits here and is announced (confirmed position raised, notice published) once a
 * later WAIT confirms it; one WAIT serves all of them, and readers before a batch read what they missed.
 */
import type { ReplicaWait } from "./replica-wait.js";

export interface PendingAnnouncements {
  /** Call once the batch's confirmation failed; `announce` runs once a later WAIT confirms it. */
  add(sessionId: string, announce: () => Promise<unknown>): void;
  readonly size: number;
  close(): void;
}

/** Between tries when a WAIT could not even be sent (the connection is down). */
const RETRY_MS = 100;

export function createPendingAnnouncements(wait: ReplicaWait): PendingAnnouncements {
  const pending = new Map<string, () => Promise<unknown>>();
  let draining = false;
  let closed = false;

  async function drain(): Promise<void> {
    draining = true;
    try {
      while (pending.size > 0 && !closed) {
        // Every batch here got its reply before this WAIT is sent or joined, so the WAIT covers it.
        const batch = [...pending];
        try {
          await wait.confirm();
        } catch {
          // Short again (the WAIT itself waited its timeout), or the connection is down.
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
          continue;
        }
        for (const [sessionId, announce] of batch) {
          if (pending.get(sessionId) === announce) pending.delete(sessionId);
          await announce().catch(() => {
            // Not announced (the connection dropped): kept, unless a newer batch took its place.
            if (!pending.has(sessionId) && !closed) pending.set(sessionId, announce);
          });
        }
      }
    } finally {
      draining = false;
    }
  }

  return {
    add(sessionId, announce) {
      if (closed) return;
      pending.set(sessionId, announce);
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
