/**
 * Composition: builds every dependency from the config (Redis or the in-memory store, the model
 * providers, the hub, the run manager) and the app on top. The server and the tests both use it;
 * whoever creates a gateway closes it.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import OpenAI from "openai";
import type { Logger } from "pino";
import { createOpenAIProvider } from "./agent/openai-provider.js";
import { RunManager } from "./agent/run-manager.js";
import { createSimulatedProvider } from "./agent/simulated-provider.js";
import type { ModelProvider } from "./agent/types.js";
import { buildApp } from "./app.js";
import { createTokenVerifier } from "./auth/verifier.js";
import type { Config } from "./config.js";
import type { AppContext } from "./http/context.js";
import { Hub } from "./hub/hub.js";
import { createMemoryLimiter, createRedisLimiter, type Limiter } from "./limits/limiter.js";
import { createMetrics } from "./metrics.js";
import { createMemorySubscriptions, createRedisSubscriptions } from "./mux/subscriptions.js";
import { OpenStreams } from "./sse/open-streams.js";
import { createKeyScheme } from "./store/keys.js";
import { createMemoryStore } from "./store/memory-store.js";
import { createMemoryPubSub, type PubSub } from "./store/pubsub.js";
import { createRedisPubSub } from "./store/redis-pubsub.js";
import { createRedisStore } from "./store/redis-store.js";
import type { StreamStore } from "./store/types.js";

export interface Gateway {
  app: ReturnType<typeof buildApp>;
  context: AppContext;
  instanceId: string;
  /** Closes Redis connections and timers (not the HTTP server, which the caller owns). */
  close(): Promise<void>;
}

export interface GatewayOptions {
  logger: Logger;
  /** Replaces the model providers (tests). */
  providers?: { openai?: ModelProvider; simulated: ModelProvider };
  /** prom-client default process metrics (off in tests that build many gateways in one process). */
  defaultMetrics?: boolean;
}

export async function createGateway(config: Readonly<Config>, options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  const metrics = createMetrics({ defaultMetrics: options.defaultMetrics ?? true });
  const keys = createKeyScheme(config.keyPrefix);
  const instanceId = `i_${randomBytes(6).toString("base64url")}`;
  const retention = {
    maxEventsPerSession: config.maxEventsPerSession,
    lifecycleMaxEvents: config.lifecycleMaxEvents,
    endedSessionTtlSeconds: config.endedSessionTtlSeconds,
    idleSessionTtlSeconds: config.idleSessionTtlSeconds,
    requestRecordTtlSeconds: config.idempotencyTtlSeconds,
  };
  const subscriptionLimits = {
    maxSessions: config.maxSessionsPerSubscription,
    ttlSeconds: config.subscriptionTtlSeconds,
  };

  let store: StreamStore;
  let pubsub: PubSub;
  let subscriptions: AppContext["subscriptions"];
  let limiter: Limiter;
  const redisClients: Redis[] = [];
  if (config.redisUrl) {
    const redisOptions = {
      // Commands wait through an outage instead of failing: open streams resume by themselves.
      maxRetriesPerRequest: null,
      // ioredis re-sends a command whose reply was lost (autoResendUnfulfilledCommands, on by default).
      // That is safe because every write is idempotent by construction: the scripts answer a repeated
      // request id or writer batch with their first reply, and the plain commands (lease SET/ZADD/DEL,
      // PUBLISH of cancels and set changes, EXPIRE) mean the same when applied twice.
      enableAutoPipelining: true,
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, 1000),
      lazyConnect: true,
    };
    const command = new Redis(config.redisUrl, { ...redisOptions, connectionName: `${instanceId}:command` });
    const subscriber = new Redis(config.redisUrl, {
      ...redisOptions,
      connectionName: `${instanceId}:subscriber`,
    });
    for (const [name, client] of [
      ["command", command],
      ["subscriber", subscriber],
    ] as const) {
      client.on("error", (error: Error) => {
        metrics.redisErrors.inc({ connection: name });
        logger.warn({ err: { message: error.message } }, `redis ${name} connection error`);
      });
      redisClients.push(client);
    }
    // An unreachable Redis at start-up is an outage like any other: /readyz says 503 until it answers.
    await Promise.all([command.connect(), subscriber.connect()]).catch((error: unknown) => {
      logger.warn(
        { err: { message: String(error) } },
        "Redis is not reachable yet; retrying in the background",
      );
    });
    pubsub = createRedisPubSub(subscriber, command);
    store = createRedisStore({ redis: command, pubsub, keys, retention });
    const requestRecords = { requestRecordTtlSeconds: config.idempotencyTtlSeconds };
    subscriptions = createRedisSubscriptions(command, pubsub, keys, subscriptionLimits, requestRecords);
    limiter = createRedisLimiter(command, config.keyPrefix, Date.now, requestRecords);
  } else {
    logger.warn(
      "REDIS_URL is not set: using the in-memory store (one instance only; nothing survives a restart)",
    );
    pubsub = createMemoryPubSub();
    store = createMemoryStore({ pubsub, keys, retention });
    subscriptions = createMemorySubscriptions(pubsub, keys, subscriptionLimits);
    limiter = createMemoryLimiter();
  }

  const providers = options.providers ?? {
    simulated: createSimulatedProvider({ tokensPerSecond: config.simulatedTokensPerSecond }),
    ...(config.openai.apiKey
      ? {
          openai: createOpenAIProvider({
            client: new OpenAI({
              apiKey: config.openai.apiKey,
              ...(config.openai.baseUrl ? { baseURL: config.openai.baseUrl } : {}),
              maxRetries: 0,
            }),
            api: config.openai.api,
            timeoutMs: config.upstreamTimeoutMs,
            ...(config.maxOutputTokens ? { maxOutputTokens: config.maxOutputTokens } : {}),
          }),
        }
      : {}),
  };
  if (!providers.openai) {
    logger.warn(
      "OPENAI_API_KEY is not set: runs use the SIMULATED model (labelled `simulated` in every start event)",
    );
  }

  const hub = new Hub(store.notifier, metrics, logger);
  const runs = new RunManager(
    {
      store,
      pubsub,
      controlChannel: keys.control(),
      providers,
      metrics,
      logger,
      onLocalAppend: (sessionId, prevId, events) => hub.deliverLocal(sessionId, prevId, events),
    },
    {
      instanceId,
      defaultModel: config.defaultModel,
      leaseMs: config.leaseMs,
      cancelGraceMs: config.cancelGraceMs,
      runBufferMaxEvents: config.runBufferMaxEvents,
    },
  );
  // Subscribing to the control channel waits for Redis. During a start-up outage it completes in the
  // background (ioredis queues it), so the instance listens meanwhile and /readyz says 503.
  const controlSubscribed = runs.init();
  if (store.isReady()) await controlSubscribed;
  else {
    controlSubscribed.catch((error: unknown) =>
      logger.error(
        { err: { message: String(error) } },
        "could not subscribe to the control channel: cancels from other instances will not reach this one",
      ),
    );
  }
  runs.startSweeper();

  const context: AppContext = {
    config,
    store,
    subscriptions,
    hub,
    runs,
    metrics,
    logger,
    state: { draining: false },
    streams: new OpenStreams(),
    limiter,
    verifier:
      config.auth.mode === "jwt"
        ? createTokenVerifier({
            secret: config.auth.jwtSecret,
            jwksUrl: config.auth.jwksUrl,
            issuer: config.auth.issuer,
            audience: config.auth.audience,
            clockToleranceSeconds: config.auth.clockToleranceSeconds,
            jwksCacheMs: config.auth.jwksCacheSeconds * 1000,
            jwksCooldownMs: config.auth.jwksCooldownMs,
          })
        : null,
  };
  if (config.auth.mode === "none") {
    logger.warn(
      "AUTHENTICATION IS OFF: anyone who can reach this gateway can start runs (spending upstream money), publish and read every session. Set AUTH_JWT_SECRET or AUTH_JWKS_URL.",
    );
  }
  return {
    app: buildApp(context),
    context,
    instanceId,
    async close() {
      runs.stop();
      await store.close();
      for (const client of redisClients) client.disconnect();
    },
  };
}
