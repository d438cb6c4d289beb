/** The only reader of process.env: every variable validated once, every problem named in one error. */
import { z } from "zod";

const integer = (defaultValue: number, min = 0) => z.coerce.number().int().min(min).default(defaultValue);
const flag = (defaultValue: boolean) =>
  z
    .enum(["true", "false", "1", "0", "yes", "no"])
    .default(defaultValue ? "true" : "false")
    .transform((value) => value === "true" || value === "1" || value === "yes");
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === "" ? undefined : value.trim()));

const schema = z.object({
  PORT: integer(3000),
  HOST: z.string().default("0.0.0.0"),
  /**
   * Which peers may set X-Forwarded-For (Express "trust proxy" values: addresses, subnets, `loopback`,
   * `uniquelocal`, a hop count): by default none, so a client cannot pick the address per-IP limits count.
   */
  TRUST_PROXY: z.string().default("false"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** Unset: the embedded in-memory store (one instance only). */
  REDIS_URL: optionalText,
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_:.-]{0,64}$/, "letters, digits, _ : . - (at most 64)")
    .default("sse:"),
  /** Comma-separated `host:port` of Redis Sentinels: the primary they name is the one Redis (instead of REDIS_URL). */
  REDIS_SENTINELS: optionalText,
  /** The primary's name in the Sentinels' configuration (`sentinel monitor <name> ...`). */
  REDIS_SENTINEL_NAME: z.string().trim().min(1).default("mymaster"),
  /** The Sentinels' own credentials, when they require them (`requirepass` in sentinel.conf). */
  REDIS_SENTINEL_USERNAME: optionalText,
  REDIS_SENTINEL_PASSWORD: optionalText,
  /**
   * Comma-separated `host:port` of Redis Cluster nodes (any of them: the rest are discovered): a Redis
   * Cluster instead of REDIS_URL. Credentials: REDIS_USERNAME, REDIS_PASSWORD; TLS: REDIS_CLUSTER_TLS.
   */
  REDIS_CLUSTER_NODES: optionalText,
  /** TLS to every Redis Cluster node (what `rediss://` is for REDIS_URL). */
  REDIS_CLUSTER_TLS: flag(false),
  /** The data nodes' credentials with REDIS_SENTINELS or REDIS_CLUSTER_NODES (REDIS_URL carries its own). */
  REDIS_USERNAME: optionalText,
  REDIS_PASSWORD: optionalText,
  /**
   * Durable acknowledgements: an append is acknowledged, and its notice published, only once this many
   * replicas confirm they hold it (Redis WAIT; on a Redis Cluster, replicas of the primary owning the
   * session). 0: off (acknowledged once the primary holds it).
   */
  REDIS_WAIT_REPLICAS: integer(0, 0),
  /** How long one append waits for the replicas' confirmation before it is answered 503 (kept, unconfirmed). */
  REDIS_WAIT_TIMEOUT_MS: integer(1_000, 1),
  OPENAI_API_KEY: optionalText,
  OPENAI_BASE_URL: optionalText,
  /** The upstream API runs call: Chat Completions, or the Responses API (same session events). */
  OPENAI_API: z.enum(["chat", "responses"]).default("chat"),
  /** Defaults to gpt-4o-mini with a key, and to the simulated model without one. */
  DEFAULT_MODEL: optionalText,
  SIMULATED_TOKENS_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(30),
  UPSTREAM_TIMEOUT_MS: integer(120_000, 1),
  MAX_OUTPUT_TOKENS: z.coerce.number().int().positive().optional(),
  MAX_EVENTS_PER_SESSION: integer(10_000, 10),
  LIFECYCLE_MAX_EVENTS: integer(10_000, 10),
  ENDED_SESSION_TTL_SECONDS: integer(86_400, 1),
  IDLE_SESSION_TTL_SECONDS: integer(86_400, 1),
  /** How long an append's first reply is kept: a repeat (Idempotency-Key, or a re-sent command) answers it. */
  IDEMPOTENCY_TTL_SECONDS: integer(600, 1),
  HEARTBEAT_MS: integer(15_000, 10),
  RETRY_MS: integer(2_000, 0),
  SLOW_CLIENT_TIMEOUT_MS: integer(30_000, 10),
  /**
   * Bytes a stream takes while its socket is full before it stops taking and ends (the client resumes
   * by id): what a stuck client may pin besides the write that filled its socket. 1 MiB.
   */
  SLOW_CLIENT_MAX_BUFFERED_BYTES: integer(1_048_576, 16_384),
  CATCH_UP_BATCH: integer(1_000, 1),
  MERGE_TOKENS_WHEN_BEHIND: flag(true),
  MAX_BODY_BYTES: integer(1_048_576, 1),
  /** Large enough for a Last-Event-ID cursor of thousands of running sessions. */
  MAX_HEADER_BYTES: integer(131_072, 16_384),
  /** Time to receive a request's headers (slow ones are answered 408): what an idle socket may hold. */
  HEADERS_TIMEOUT_MS: integer(10_000, 100),
  /** Time to receive a whole request, body included (408). A stream's request is complete at once. */
  REQUEST_TIMEOUT_MS: integer(30_000, 100),
  MAX_EVENTS_PER_APPEND: integer(1_000, 1),
  MAX_SESSIONS_PER_CONNECTION: integer(256, 1),
  MAX_SESSIONS_PER_SUBSCRIPTION: integer(10_000, 1),
  SUBSCRIPTION_TTL_SECONDS: integer(86_400, 1),
  LEASE_MS: integer(10_000, 100),
  /** How long a request waits for a store read (or a limit's place): past it, 503 unavailable. */
  STORE_TIMEOUT_MS: integer(5_000, 10),
  CANCEL_GRACE_MS: integer(1_000, 0),
  /** Unstored events per run. Full: the run reads its model slower; full, Redis away: store_unavailable. */
  RUN_BUFFER_MAX_EVENTS: integer(10_000, 1),
  /** How long a run whose buffer is full waits for a store that takes none of its events: then store_unavailable. */
  RUN_STORE_OUTAGE_MS: integer(3_000, 100),
  NODE_ENV: optionalText,
  /** "jwt" when a secret or JWKS URL is set; "none" (open) otherwise. Production refuses open mode unless explicit. */
  AUTH_MODE: z.enum(["none", "jwt"]).optional(),
  AUTH_JWT_SECRET: optionalText,
  AUTH_JWKS_URL: z.url().optional(),
  AUTH_ISSUER: optionalText,
  AUTH_AUDIENCE: optionalText,
  AUTH_COOKIE_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .default("sse_token"),
  AUTH_CLOCK_TOLERANCE_SECONDS: integer(5, 0),
  /** Every token must carry `exp`, at most this far from now: a stolen token, and a stream it opened, end by then. */
  AUTH_MAX_TOKEN_LIFETIME_SECONDS: integer(86_400, 1),
  AUTH_JWKS_CACHE_SECONDS: integer(600, 1),
  AUTH_JWKS_COOLDOWN_MS: integer(30_000, 0),
  /** Comma-separated origins allowed by CORS ("*" for any); none by default. */
  CORS_ORIGINS: z.string().default(""),
  /**
   * Runs are limited per subject (per IP in open mode), but the defaults serve the headline case: one
   * client starts 100 runs at once, and again within the same minute (a fixed window: up to twice
   * this across a boundary). An `admin` token is never run-limited.
   */
  LIMIT_RUNS_PER_MINUTE: integer(300, 1),
  /** 100 at once twice over, before the first hundred have ended. */
  LIMIT_CONCURRENT_RUNS: integer(200, 1),
  LIMIT_CONNECTIONS_PER_SUBJECT: integer(1_000, 1),
  LIMIT_CONNECTIONS_PER_IP: integer(1_000, 1),
  LIMIT_PUBLISH_EVENTS_PER_SECOND: integer(10_000, 1),
  /**
   * Sessions an outside producer may create (by appending to a new id) per subject (per IP in open
   * mode) per minute; each is kept a day and announced on @sessions. Runs count against the run limits.
   * The headline case (100 agents at once, twice a minute) is 200. An `admin` token is never limited.
   */
  LIMIT_NEW_SESSIONS_PER_MINUTE: integer(300, 1),
  /**
   * Requests of one client address in flight on an instance, from their headers to their answer (an
   * open stream counts only until it opens): what unauthenticated and slow requests may hold. 429 past it.
   */
  LIMIT_REQUESTS_IN_FLIGHT_PER_IP: integer(256, 1),
  MAX_JSON_DEPTH: integer(32, 2),
  DRAIN_MS: integer(10_000, 0),
  RUN_DRAIN_TIMEOUT_MS: integer(30_000, 0),
});

/** Every environment variable the gateway reads (the docs' configuration table lists each). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.shape);

export interface Config {
  port: number;
  host: string;
  trustProxy: string;
  logLevel: z.infer<typeof schema>["LOG_LEVEL"];
  redisUrl: string | undefined;
  /** Set with REDIS_CLUSTER_NODES: a Redis Cluster, found through these nodes. */
  redisCluster: RedisClusterConfig | undefined;
  /** Set with REDIS_SENTINELS: the primary is found through these Sentinels. */
  redisSentinel: RedisSentinelConfig | undefined;
  /** Durable acknowledgements (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS); replicas 0: off. */
  redisWait: { replicas: number; timeoutMs: number };
  keyPrefix: string;
  openai: { apiKey: string | undefined; baseUrl: string | undefined; api: "chat" | "responses" };
  defaultModel: string;
  simulatedTokensPerSecond: number;
  upstreamTimeoutMs: number;
  maxOutputTokens: number | undefined;
  maxEventsPerSession: number;
  lifecycleMaxEvents: number;
  endedSessionTtlSeconds: number;
  idleSessionTtlSeconds: number;
  idempotencyTtlSeconds: number;
  heartbeatMs: number;
  retryMs: number;
  slowClientTimeoutMs: number;
  slowClientMaxBufferedBytes: number;
  catchUpBatch: number;
  mergeTokensWhenBehind: boolean;
  maxBodyBytes: number;
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  maxEventsPerAppend: number;
  maxSessionsPerConnection: number;
  maxSessionsPerSubscription: number;
  subscriptionTtlSeconds: number;
  leaseMs: number;
  storeTimeoutMs: number;
  cancelGraceMs: number;
  runBufferMaxEvents: number;
  runStoreOutageMs: number;
  auth: {
    mode: "none" | "jwt";
    jwtSecret: string | undefined;
    jwksUrl: string | undefined;
    issuer: string | undefined;
    audience: string | undefined;
    cookieName: string;
    clockToleranceSeconds: number;
    maxTokenLifetimeSeconds: number;
    jwksCacheSeconds: number;
    jwksCooldownMs: number;
  };
  corsOrigins: string[];
  limits: {
    runsPerMinute: number;
    concurrentRuns: number;
    connectionsPerSubject: number;
    connectionsPerIp: number;
    publishEventsPerSecond: number;
    newSessionsPerMinute: number;
    requestsInFlightPerIp: number;
  };
  maxJsonDepth: number;
  drainMs: number;
  runDrainTimeoutMs: number;
}

export interface RedisSentinelConfig {
  sentinels: Array<{ host: string; port: number }>;
  name: string;
  username: string | undefined;
  password: string | undefined;
  sentinelUsername: string | undefined;
  sentinelPassword: string | undefined;
}

export interface RedisClusterConfig {
  nodes: Array<{ host: string; port: number }>;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
}

/** `host:port,host:port` → addresses; the problems found are pushed onto `problems`. */
export function parseHostPorts(
  variable: string,
  text: string,
  problems: string[],
): Array<{ host: string; port: number }> {
  const addresses: Array<{ host: string; port: number }> = [];
  let invalid = 0;
  for (const item of text.split(",")) {
    const entry = item.trim();
    if (entry === "") continue;
    const colon = entry.lastIndexOf(":");
    const host = entry.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
    const port = Number(entry.slice(colon + 1));
    if (colon <= 0 || host === "" || !Number.isInteger(port) || port < 1 || port > 65_535) {
      problems.push(`${variable}: "${entry}" is not host:port`);
      invalid++;
      continue;
    }
    addresses.push({ host, port });
  }
  if (addresses.length === 0 && invalid === 0) problems.push(`${variable}: no host:port given`);
  return addresses;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export const SIMULATED_MODEL = "simulated";

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const parsed = schema.safeParse(env);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
  // Checks across variables read the raw values, so that they are reported with the others, in one error.
  const text = (name: string) => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const secret = text("AUTH_JWT_SECRET");
  const jwksUrl = text("AUTH_JWKS_URL");
  const explicitMode: Config["auth"]["mode"] | undefined =
    env.AUTH_MODE === "none" || env.AUTH_MODE === "jwt" ? env.AUTH_MODE : undefined;
  const authMode: Config["auth"]["mode"] = explicitMode ?? (secret || jwksUrl ? "jwt" : "none");
  if (authMode === "jwt" && !secret && !jwksUrl) {
    problems.push("AUTH_MODE=jwt needs AUTH_JWT_SECRET or AUTH_JWKS_URL");
  }
  if (secret && secret.length < 32) {
    problems.push("AUTH_JWT_SECRET: at least 32 characters (HS256 needs a 256-bit secret)");
  }
  // Any case: `Production` or `PRODUCTION` is production too (open mode must not start by a typo).
  if (text("NODE_ENV")?.toLowerCase() === "production" && authMode === "none" && explicitMode !== "none") {
    problems.push(
      "NODE_ENV=production without authentication: set AUTH_JWT_SECRET or AUTH_JWKS_URL, or AUTH_MODE=none to run open on purpose",
    );
  }
  if (parsed.success && parsed.data.HEADERS_TIMEOUT_MS > parsed.data.REQUEST_TIMEOUT_MS) {
    problems.push("HEADERS_TIMEOUT_MS: at most REQUEST_TIMEOUT_MS (the headers are part of the request)");
  }
  const sentinelsText = text("REDIS_SENTINELS");
  const sentinels = sentinelsText ? parseHostPorts("REDIS_SENTINELS", sentinelsText, problems) : [];
  if (sentinelsText && text("REDIS_URL")) {
    problems.push("REDIS_SENTINELS and REDIS_URL: set one (the Sentinels name the primary)");
  }
  const clusterText = text("REDIS_CLUSTER_NODES");
  const clusterNodes = clusterText ? parseHostPorts("REDIS_CLUSTER_NODES", clusterText, problems) : [];
  if (clusterText && (sentinelsText || text("REDIS_URL"))) {
    problems.push("REDIS_CLUSTER_NODES: set one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES");
  }
  if (
    parsed.success &&
    parsed.data.REDIS_WAIT_REPLICAS > 0 &&
    !sentinelsText &&
    !text("REDIS_URL") &&
    !clusterText
  ) {
    problems.push(
      "REDIS_WAIT_REPLICAS: needs Redis with replicas (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES)",
    );
  }
  if (!parsed.success || problems.length > 0) {
    throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  const e = parsed.data;
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    redisUrl: e.REDIS_URL,
    redisCluster: clusterText
      ? {
          nodes: clusterNodes,
          username: e.REDIS_USERNAME,
          password: e.REDIS_PASSWORD,
          tls: e.REDIS_CLUSTER_TLS,
        }
      : undefined,
    redisSentinel: sentinelsText
      ? {
          sentinels,
          name: e.REDIS_SENTINEL_NAME,
          username: e.REDIS_USERNAME,
          password: e.REDIS_PASSWORD,
          sentinelUsername: e.REDIS_SENTINEL_USERNAME,
          sentinelPassword: e.REDIS_SENTINEL_PASSWORD,
        }
      : undefined,
    redisWait: { replicas: e.REDIS_WAIT_REPLICAS, timeoutMs: e.REDIS_WAIT_TIMEOUT_MS },
    keyPrefix: e.REDIS_KEY_PREFIX,
    openai: { apiKey: e.OPENAI_API_KEY, baseUrl: e.OPENAI_BASE_URL, api: e.OPENAI_API },
    defaultModel: e.DEFAULT_MODEL ?? (e.OPENAI_API_KEY ? "gpt-4o-mini" : SIMULATED_MODEL),
    simulatedTokensPerSecond: e.SIMULATED_TOKENS_PER_SECOND,
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT_MS,
    maxOutputTokens: e.MAX_OUTPUT_TOKENS,
    maxEventsPerSession: e.MAX_EVENTS_PER_SESSION,
    lifecycleMaxEvents: e.LIFECYCLE_MAX_EVENTS,
    endedSessionTtlSeconds: e.ENDED_SESSION_TTL_SECONDS,
    idleSessionTtlSeconds: e.IDLE_SESSION_TTL_SECONDS,
    idempotencyTtlSeconds: e.IDEMPOTENCY_TTL_SECONDS,
    heartbeatMs: e.HEARTBEAT_MS,
    retryMs: e.RETRY_MS,
    slowClientTimeoutMs: e.SLOW_CLIENT_TIMEOUT_MS,
    slowClientMaxBufferedBytes: e.SLOW_CLIENT_MAX_BUFFERED_BYTES,
    catchUpBatch: e.CATCH_UP_BATCH,
    mergeTokensWhenBehind: e.MERGE_TOKENS_WHEN_BEHIND,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxHeaderBytes: e.MAX_HEADER_BYTES,
    headersTimeoutMs: e.HEADERS_TIMEOUT_MS,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    maxEventsPerAppend: e.MAX_EVENTS_PER_APPEND,
    maxSessionsPerConnection: e.MAX_SESSIONS_PER_CONNECTION,
    maxSessionsPerSubscription: e.MAX_SESSIONS_PER_SUBSCRIPTION,
    subscriptionTtlSeconds: e.SUBSCRIPTION_TTL_SECONDS,
    leaseMs: e.LEASE_MS,
    storeTimeoutMs: e.STORE_TIMEOUT_MS,
    cancelGraceMs: e.CANCEL_GRACE_MS,
    runBufferMaxEvents: e.RUN_BUFFER_MAX_EVENTS,
    runStoreOutageMs: e.RUN_STORE_OUTAGE_MS,
    auth: {
      mode: authMode,
      jwtSecret: e.AUTH_JWT_SECRET,
      jwksUrl: e.AUTH_JWKS_URL,
      issuer: e.AUTH_ISSUER,
      audience: e.AUTH_AUDIENCE,
      cookieName: e.AUTH_COOKIE_NAME,
      clockToleranceSeconds: e.AUTH_CLOCK_TOLERANCE_SECONDS,
      maxTokenLifetimeSeconds: e.AUTH_MAX_TOKEN_LIFETIME_SECONDS,
      jwksCacheSeconds: e.AUTH_JWKS_CACHE_SECONDS,
      jwksCooldownMs: e.AUTH_JWKS_COOLDOWN_MS,
    },
    corsOrigins: e.CORS_ORIGINS.split(",")
      .map((origin) => origin.trim())
      .filter((origin) => origin !== ""),
    limits: {
      runsPerMinute: e.LIMIT_RUNS_PER_MINUTE,
      concurrentRuns: e.LIMIT_CONCURRENT_RUNS,
      connectionsPerSubject: e.LIMIT_CONNECTIONS_PER_SUBJECT,
      connectionsPerIp: e.LIMIT_CONNECTIONS_PER_IP,
      publishEventsPerSecond: e.LIMIT_PUBLISH_EVENTS_PER_SECOND,
      newSessionsPerMinute: e.LIMIT_NEW_SESSIONS_PER_MINUTE,
      requestsInFlightPerIp: e.LIMIT_REQUESTS_IN_FLIGHT_PER_IP,
    },
    maxJsonDepth: e.MAX_JSON_DEPTH,
    drainMs: e.DRAIN_MS,
    runDrainTimeoutMs: e.RUN_DRAIN_TIMEOUT_MS,
  });
}
