/**
 * Ends the sessions whose run's lease lapsed (their instance died) with exactly one terminal event,
 * `error` `interrupted`, appended only where no lease is held; every instance sweeps.
 */
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import type { StreamStore } from "../store/types.js";

export interface LeaseSweeperDeps {
  store: StreamStore;
  metrics: Metrics;
  logger: Logger;
  clock: () => number;
  leaseMs: number;
  /** The run is this instance's own (alive, whatever its lease says). */
  runsHere(sessionId: string): boolean;
}

export class LeaseSweeper {
  private timer: NodeJS.Timeout | undefined;
  /** When the sweeper first saw the store ready after an outage (or at start); null while it is down. */
  private storeReadySince: number | null = null;

  constructor(private readonly deps: LeaseSweeperDeps) {}

  start(): void {
    // Checked four times per lease period: a crashed run is ended at most ~1.25 leases after its last renewal.
    const intervalMs = Math.max(50, Math.floor(this.deps.leaseMs / 4));
    const tick = () => {
      this.sweep().catch((error: unknown) => this.deps.logger.warn({ err: error }, "lease sweep failed"));
      this.timer = setTimeout(tick, intervalMs * (0.75 + Math.random() * 0.5));
      this.timer.unref();
    };
    this.timer = setTimeout(tick, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** One pass: how many sessions it ended. */
  async sweep(): Promise<number> {
    const { store, metrics, logger, clock, leaseMs } = this.deps;
    const now = clock();
    if (!store.isReady()) {
      this.storeReadySince = null;
      return 0;
    }
    // Leases also lapse while Redis is unreachable, not only when their instance dies. Instances
    // reconnect at different moments, so right after an outage every live run's lease looks expired
    // until its owner renews it (every leaseMs / 3). Sweep only once the store has been back for a
    // whole lease period: otherwise a healthy run would be ended as interrupted.
    this.storeReadySince ??= now;
    if (now - this.storeReadySince < leaseMs) return 0;
    let interrupted = 0;
    for (const id of await store.expiredLeases(clock(), 100)) {
      if (this.deps.runsHere(id)) continue;
      const outcome = await store.append(
        id,
        [
          {
            type: "error",
            data: { code: "interrupted", message: "the instance running this session stopped" },
          },
        ],
        { requireNoLease: true },
      );
      if (outcome.kind === "appended") {
        interrupted++;
        metrics.runsEnded.inc({ status: "interrupted" });
        logger.warn({ sessionId: id }, "ended an interrupted run");
      }
      if (outcome.kind !== "leased") await store.forgetLease(id);
    }
    return interrupted;
  }
}
