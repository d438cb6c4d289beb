/** What the HTTP layer is built from: everything passed in, nothing imported as a singleton. */
import type { Logger } from "pino";
import type { RunManager } from "../agent/run-manager.js";
import type { TokenVerifier } from "../auth/verifier.js";
import type { Readiness } from "../backend/types.js";
import type { Config } from "../config.js";
import type { Hub } from "../hub/hub.js";
import type { Limiter } from "../limits/limiter.js";
import type { Metrics } from "../metrics.js";
import type { SubscriptionStore } from "../mux/subscriptions.js";
import type { OpenStreams } from "../sse/open-streams.js";
import type { StreamStore } from "../store/types.js";

export interface InstanceState {
  draining: boolean;
}

export interface AppContext {
  config: Readonly<Config>;
  store: StreamStore;
  subscriptions: SubscriptionStore;
  hub: Hub;
  runs: RunManager;
  metrics: Metrics;
  logger: Logger;
  state: InstanceState;
  streams: OpenStreams;
  limiter: Limiter;
  /** The backend's connections, as /readyz reports them. */
  readiness(): Readiness;
  /** Null in open mode (no authentication configured). */
  verifier: TokenVerifier | null;
}
