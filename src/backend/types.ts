/**
 * A backend: every shared part of the gateway (the stream store, pub/sub, subscription sets, limits)
 * built together by one factory per kind, over the connections that factory opens. Whoever creates a
 * backend closes it; the backend closes the connections it opened.
 */
import type { Limiter } from "../limits/limiter.js";
import type { SubscriptionLimits, SubscriptionStore } from "../mux/subscriptions.js";
import type { PubSub } from "../store/pubsub.js";
import type { RetentionOptions } from "../store/session-fields.js";
import type { StreamStore } from "../store/types.js";

/** The kinds there are: one Redis (a URL or Sentinels) or a Redis Cluster. */
export type BackendKind = "memory" | "redis" | "redis-cluster";

/** One link to the backing service (a connection, later a shard), as readiness reports it. */
export interface ConnectionState {
  /** Its role, e.g. `command` or `subscriber`. */
  name: string;
  ready: boolean;
  /** The client's own word for its state (ioredis: `connecting`, `ready`, `reconnecting`, `end`, ...). */
  status: string;
}

export interface Readiness {
  /** True when every connection is ready (the memory backend has none: always ready). */
  ready: boolean;
  connections: ConnectionState[];
}

export interface Backend {
  readonly kind: BackendKind;
  readonly store: StreamStore;
  readonly pubsub: PubSub;
  readonly subscriptions: SubscriptionStore;
  readonly limiter: Limiter;
  /** Where each connection stands now (cheap: no round trip), so /readyz can say which one is down. */
  readiness(): Readiness;
  /** Closes the parts, then the connections the backend opened. */
  close(): Promise<void>;
}

/** What every kind is built from: passed in (the config is read elsewhere, once). */
export interface BackendOptions {
  /** Starts every key and channel name, so deployments sharing one Redis never see each other's. */
  keyPrefix: string;
  /**
   * Stream trimming and expiry; its `requestRecordTtlSeconds` is also how long subscription and limiter
   * calls are remembered to answer a resent call the same (one setting for every request record).
   */
  retention: RetentionOptions;
  subscriptionLimits: SubscriptionLimits;
  /** The time the parts read (ms); `Date.now` by default. Tests inject one. */
  clock?: () => number;
}
