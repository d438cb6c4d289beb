/**
 * Composition: builds every dependency from the config (the backend, Redis or in-memory, the model
 * providers, the hub, the run manager) and the app on top. The server and the tests both use it;
 * whoever creates a gateway closes it.
 */
import OpenAI from "openai";
import type { Logger } from "pino";
import { createOpenAIProvider } from "./agent/openai-provider.js";
import { RunManager } from "./agent/run-manager.js";
import { createSimulatedProvider } from "./agent/simulated-provider.js";
import type { ModelProvider } from "./agent/types.js";
import { buildApp } from "./app.js";
import { createTokenVerifier } from "./auth/verifier.js";
import { createBackend } from "./backend/index.js";
import type { Config } from "./config.js";
import { boundedLimiter, boundedStore, boundedSubscriptions } from "./http/bounded.js";
import type { AppContext } from "./http/context.js";
import { Hub } from "./hub/hub.js";
import { createMetrics } from "./metrics.js";
import { randomId } from "./random-id.js";
import { OpenStreams } from "./sse/open-streams.js";
import { createKeyScheme } from "./store/keys.js";

export interface Gateway {
  app: ReturnType<typeof buildApp>;
  context: AppContext;
  instanceId: string;
  /** Closes the backend (its Redis connections) and timers (not the HTTP server, which the caller owns). */
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
  const instanceId = `i_${randomId(6)}`;
  const backend = await createBackend(config, { instanceId, logger, metrics });
  const { store, pubsub, subscriptions, limiter } = backend;

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
      onLocalAppend: (sessionId, events, appended) => hub.deliverAppended(sessionId, events, appended),
    },
    {
      instanceId,
      defaultModel: config.defaultModel,
      leaseMs: config.leaseMs,
      cancelGraceMs: config.cancelGraceMs,
      runBufferMaxEvents: config.runBufferMaxEvents,
      runStoreOutageMs: config.runStoreOutageMs,
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

  // Requests wait for the store within STORE_TIMEOUT_MS (http/bounded.ts); runs and the sweeper use it as is.
  const context: AppContext = {
    config,
    store: boundedStore(store, config.storeTimeoutMs),
    subscriptions: boundedSubscriptions(subscriptions, config.storeTimeoutMs),
    hub,
    runs,
    metrics,
    logger,
    state: { draining: false },
    streams: new OpenStreams(),
    limiter: boundedLimiter(limiter, config.storeTimeoutMs),
    readiness: () => backend.readiness(),
    verifier:
      config.auth.mode === "jwt"
        ? createTokenVerifier({
            secret: config.auth.jwtSecret,
            jwksUrl: config.auth.jwksUrl,
            issuer: config.auth.issuer,
            audience: config.auth.audience,
            clockToleranceSeconds: config.auth.clockToleranceSeconds,
            maxTokenLifetimeSeconds: config.auth.maxTokenLifetimeSeconds,
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
      await backend.close();
    },
  };
}
