/** Every prom-client metric, named and documented in one place. No label ever holds a session id. */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

const NON_COUNTER_TOTALS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/**
 * The event types of the contract (a session's, and the lifecycle feed's `created`/`ended`): the only
 * values `sse_events_appended_total{type}` takes. Producers choose their own types, and a label taken
 * from a caller would let anyone create series without bound.
 */
const KNOWN_EVENT_TYPES: ReadonlySet<string> = new Set([
  "start",
  "token",
  "usage",
  "done",
  "error",
  "cancelled",
  "reasoning",
  "refusal",
  "tool_call_delta",
  "tool_call",
  "snapshot",
  "created",
  "ended",
]);

/** The label an event type is counted under: itself when the contract names it, else `other`. */
export function eventTypeLabel(type: string): string {
  return KNOWN_EVENT_TYPES.has(type) ? type : "other";
}

/**
 * A counter for the hot path (per event, per connection): `add` bumps a plain number, and prom-client
 * receives the sum when it is scraped.
 */
function hotPathCounter(name: string, help: string, registers: Registry[]) {
  let sinceScrape = 0;
  const counter = new Counter({
    name,
    help,
    registers,
    collect() {
      if (sinceScrape === 0) return;
      this.inc(sinceScrape);
      sinceScrape = 0;
    },
  });
  return {
    counter,
    add(count = 1): void {
      sinceScrape += count;
    },
  };
}

/**
 * Label values known in advance, exported at 0 from the start (Prometheus: "avoid missing metrics").
 * A series that first appears at 1 has no earlier sample, so increase()/rate() miss that first event
 * (the first interrupted run after a restart would not fire SseGatewayRunsInterrupted), and a panel
 * shows "No data" instead of 0. Other values (other error codes) still appear when first used.
 */
const INITIAL_LABELS = {
  runEndStatus: ["done", "cancelled", "interrupted", "store_unavailable", "upstream_error"],
  connectionKind: ["session", "multiplexed", "agent"],
  redisConnection: ["command", "subscriber"],
  redisClusterEvent: ["node_added", "node_removed", "slots_moved", "channels_moved", "resubscribed"],
  gapReason: ["trimmed", "expired"],
  redisWaitOutcome: ["confirmed", "short"],
} as const;

export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // prom-client's totals of these are GAUGES named `_total`, which `promtool check metrics` rejects
    // (and Prometheus treats `_total` as a counter). sum(nodejs_active_handles) gives the same number.
    for (const name of NON_COUNTER_TOTALS) registry.removeSingleMetric(name);
  }
  const registers = [registry];
  const delivered = hotPathCounter(
    "sse_events_delivered_total",
    "Events written to SSE connections (one per event per connection)",
    registers,
  );
  const socketWrites = hotPathCounter(
    "sse_socket_writes_total",
    "Writes to SSE sockets (events are coalesced: compare with sse_events_delivered_total)",
    registers,
  );

  const eventsAppended = new Counter({
    name: "sse_events_appended_total",
    help: "Events appended to session streams by this instance, by event type (types outside the contract: other)",
    labelNames: ["type"] as const,
    registers,
  });

  /** What sse_ready reports at each scrape; until an instance sets it, 0 (not known to be ready). */
  let readinessProbe: () => boolean = () => false;
  /** A Redis Cluster backend's connections per primary, read at each scrape (none on other kinds). */
  let shardConnectionsProbe: () => ReadonlyMap<string, number> = () => new Map();

  const metrics = {
    addDelivered: delivered.add,
    addSocketWrite: socketWrites.add,
    eventsDelivered: delivered.counter,
    socketWrites: socketWrites.counter,
    registry,
    openConnections: new Gauge({
      name: "sse_open_connections",
      help: "SSE connections open on this instance, by kind (session, multiplexed, agent)",
      labelNames: ["kind"] as const,
      registers,
    }),
    ready: new Gauge({
      name: "sse_ready",
      help: "1 while this instance is ready for traffic (store reachable, not draining: /readyz 200), else 0",
      registers,
      collect() {
        this.set(readinessProbe() ? 1 : 0);
      },
    }),
    /** Called once by whoever can tell readiness (server.ts); sse_ready asks it at each scrape. */
    setReadinessProbe(probe: () => boolean): void {
      readinessProbe = probe;
    },
    /** Takes any event type: the label is normalised here (eventTypeLabel), so no caller can forget. */
    eventsAppended: {
      counter: eventsAppended,
      inc(labels: { type: string }, count = 1): void {
        eventsAppended.inc({ type: eventTypeLabel(labels.type) }, count);
      },
    },
    replayedEvents: new Counter({
      name: "sse_events_replayed_total",
      help: "Events read back from the store for readers that were behind (resume, slow client, late join)",
      registers,
    }),
    runsStarted: new Counter({ name: "sse_runs_started_total", help: "Agent runs started", registers }),
    runsEnded: new Counter({
      name: "sse_runs_ended_total",
      help: "Agent runs ended, by final status",
      labelNames: ["status"] as const,
      registers,
    }),
    /** The model's first output of any kind: what a reader waits for before anything streams. */
    timeToFirstToken: new Histogram({
      name: "sse_run_time_to_first_token_seconds",
      help: "From run start to the model's first output of any kind (token, reasoning, refusal or tool call) appended",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    }),
    /** The first answer text (`token`): later than the above when the model reasons or calls tools first. */
    timeToFirstAnswerToken: new Histogram({
      name: "sse_run_time_to_first_answer_token_seconds",
      help: "From run start to the first answer token (a token event, not reasoning or a tool call) appended",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    }),
    deliveryLatency: new Histogram({
      name: "sse_append_to_delivery_seconds",
      help: "From an event's position time (its append) to its hand-off to live connections, once per notice",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    slowClientCatchUps: new Counter({
      name: "sse_slow_client_catch_ups_total",
      help: "Times a connection's socket filled up and it switched to catching up from the store",
      registers,
    }),
    slowClientCloses: new Counter({
      name: "sse_slow_client_closes_total",
      help: "Connections closed because they stayed stuck longer than the slow-client timeout",
      registers,
    }),
    redisErrors: new Counter({
      name: "sse_redis_errors_total",
      help: "Errors reported by Redis connections",
      labelNames: ["connection"] as const,
      registers,
    }),
    redisFailovers: new Counter({
      name: "sse_redis_failovers_total",
      help: "Redis connections that came back on another primary than before (a Sentinel failover), by connection",
      labelNames: ["connection"] as const,
      registers,
    }),
    redisWaitSeconds: new Histogram({
      name: "sse_redis_wait_seconds",
      help: "REDIS_WAIT_REPLICAS: time of one WAIT for the replicas' confirmation, by outcome (confirmed, short: fewer replicas than asked)",
      labelNames: ["outcome"] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    /** Shards are addresses of primaries (a few per deployment), never caller input. */
    redisShardConnections: new Gauge({
      name: "sse_redis_shard_connections",
      help: "Redis Cluster: this instance's open connections to each shard's primary (command and subscriber: 2 when all is well), by shard (host:port)",
      labelNames: ["shard"] as const,
      registers,
      collect() {
        this.reset();
        for (const [shard, connections] of shardConnectionsProbe()) this.set({ shard }, connections);
      },
    }),
    /** Called once by a Redis Cluster backend; sse_redis_shard_connections asks it at each scrape. */
    setShardConnectionsProbe(probe: () => ReadonlyMap<string, number>): void {
      shardConnectionsProbe = probe;
    },
    redisClusterEvents: new Counter({
      name: "sse_redis_cluster_events_total",
      help: "Redis Cluster topology as this instance saw it, by event: node_added, node_removed (a node connection), slots_moved (slots with a new primary: a failover or resharding), channels_moved and resubscribed (shard channels subscribed again: notices meanwhile are read from the store)",
      labelNames: ["event"] as const,
      registers,
    }),
    gaps: new Counter({
      name: "sse_gaps_total",
      help: "Readers whose requested position was no longer retained, by reason (trimmed, expired)",
      labelNames: ["reason"] as const,
      registers,
    }),
    sessionsPerConnection: new Histogram({
      name: "sse_sessions_per_connection",
      help: "Sessions on a multiplexed connection when it opens",
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 1000, 10000],
      registers,
    }),
    subscriptionSetsOpen: new Gauge({
      name: "sse_subscription_sets_open",
      help: "Subscription sets followed by at least one open connection on this instance",
      registers,
    }),
    cursorBytes: new Histogram({
      name: "sse_cursor_bytes",
      help: "Size of the multiplexed cursor (id:) sent, sampled on one batch in 64 of each connection",
      buckets: [8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384],
      registers,
    }),
    resumes: new Counter({
      name: "sse_resumes_total",
      help: "Connections opened with a Last-Event-ID or lastEventId, by kind",
      labelNames: ["kind"] as const,
      registers,
    }),
    mergedTokens: new Counter({
      name: "sse_merged_tokens_total",
      help: "Delta events (token, reasoning, tool_call_delta) folded into a preceding frame of their kind for a client that was far behind",
      registers,
    }),
  };
  for (const kind of INITIAL_LABELS.connectionKind) metrics.openConnections.set({ kind }, 0);
  for (const status of INITIAL_LABELS.runEndStatus) metrics.runsEnded.inc({ status }, 0);
  for (const connection of INITIAL_LABELS.redisConnection) metrics.redisErrors.inc({ connection }, 0);
  for (const event of INITIAL_LABELS.redisClusterEvent) metrics.redisClusterEvents.inc({ event }, 0);
  for (const connection of INITIAL_LABELS.redisConnection) metrics.redisFailovers.inc({ connection }, 0);
  // Exported at 0 from the start, so the first gap or short WAIT after a restart moves rate() at once.
  for (const reason of INITIAL_LABELS.gapReason) metrics.gaps.inc({ reason }, 0);
  for (const outcome of INITIAL_LABELS.redisWaitOutcome) metrics.redisWaitSeconds.zero({ outcome });
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
