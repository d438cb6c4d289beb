/** The instance's own refusal of new work: while draining, or while the store is unreachable. */
import { errors } from "../errors.js";
import type { AppContext } from "./context.js";

/**
 * Every request that needs the store is answered `503 unavailable` (Retry-After) at once while the
 * backend is not ready (a connection down), instead of queueing its reads until Redis returns; what it
 * waits for once started is bounded too (bounded.ts).
 */
export function assertStoreReady(context: AppContext): void {
  if (!context.readiness().ready) throw errors.unavailable();
}

/** New work is refused while draining or while the store is unreachable (nothing is accepted that could be lost). */
export function assertAcceptingWork(context: AppContext): void {
  if (context.state.draining) throw errors.draining();
  if (!context.store.isReady()) throw errors.unavailable();
}
