/** The instance's own refusal of new work: while draining, or while the store is unreachable. */
import { errors } from "../errors.js";
import type { AppContext } from "./context.js";

/** New work is refused while draining or while the store is unreachable (nothing is accepted that could be lost). */
export function assertAcceptingWork(context: AppContext): void {
  if (context.state.draining) throw errors.draining();
  if (!context.store.isReady()) throw errors.unavailable();
}
