/** loadConfig: the authentication modes, production's refusal to run open by accident, and one error for all problems. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

const LONG_SECRET = "0123456789abcdef0123456789abcdef";

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig: authentication", () => {
  it("is open (mode none) when no secret or JWKS URL is set, outside production", () => {
    const config = loadConfig({});
    expect(config.auth.mode).toBe("none");
    expect(loadConfig({ NODE_ENV: "development" }).auth.mode).toBe("none");
  });

  it("refuses to start open in production, naming AUTH_MODE", () => {
    const error = errorOf({ NODE_ENV: "production" });
    expect(error.message).toContain("AUTH_MODE");
    expect(error.message).toContain("NODE_ENV=production");
  });

  it("treats NODE_ENV=production in any case as production", () => {
    for (const value of ["Production", "PRODUCTION", " production "]) {
      expect(errorOf({ NODE_ENV: value }).message, value).toContain("AUTH_MODE");
    }
  });

  it("starts open in production when AUTH_MODE=none says so", () => {
    const config = loadConfig({ NODE_ENV: "production", AUTH_MODE: "none" });
    expect(config.auth.mode).toBe("none");
  });

  it("starts in production with a secret or a JWKS URL", () => {
    expect(loadConfig({ NODE_ENV: "production", AUTH_JWT_SECRET: LONG_SECRET }).auth.mode).toBe("jwt");
    expect(
      loadConfig({ NODE_ENV: "production", AUTH_JWKS_URL: "https://issuer.example/.well-known/jwks.json" })
        .auth.mode,
    ).toBe("jwt");
  });

  it("refuses a short AUTH_JWT_SECRET", () => {
    const error = errorOf({ AUTH_JWT_SECRET: "too-short" });
    expect(error.message).toContain("AUTH_JWT_SECRET");
    expect(error.message).toMatch(/32/);
    // Exactly 32 characters is enough.
    expect(loadConfig({ AUTH_JWT_SECRET: LONG_SECRET }).auth.jwtSecret).toBe(LONG_SECRET);
  });

  it("refuses AUTH_MODE=jwt without a key, and a JWKS URL that is not a URL", () => {
    expect(errorOf({ AUTH_MODE: "jwt" }).message).toMatch(/AUTH_JWT_SECRET or AUTH_JWKS_URL/);
    expect(errorOf({ AUTH_JWKS_URL: "not a url" }).message).toContain("AUTH_JWKS_URL");
    expect(errorOf({ AUTH_MODE: "maybe" }).message).toContain("AUTH_MODE");
  });

  it("reads the auth variables and their defaults", () => {
    const config = loadConfig({
      AUTH_JWT_SECRET: `  ${LONG_SECRET}  `,
      AUTH_ISSUER: "https://issuer.example",
      AUTH_AUDIENCE: "gateway",
      AUTH_COOKIE_NAME: "my_cookie",
      AUTH_CLOCK_TOLERANCE_SECONDS: "0",
      AUTH_MAX_TOKEN_LIFETIME_SECONDS: "3600",
    });
    expect(config.auth).toMatchObject({
      mode: "jwt",
      jwtSecret: LONG_SECRET,
      issuer: "https://issuer.example",
      audience: "gateway",
      cookieName: "my_cookie",
      clockToleranceSeconds: 0,
      maxTokenLifetimeSeconds: 3600,
    });
    const defaults = loadConfig({}).auth;
    expect(defaults).toMatchObject({
      cookieName: "sse_token",
      clockToleranceSeconds: 5,
      maxTokenLifetimeSeconds: 86_400,
    });
    expect(errorOf({ AUTH_COOKIE_NAME: "bad cookie;" }).message).toContain("AUTH_COOKIE_NAME");
  });
});

describe("loadConfig: limits and hardening", () => {
  it("has the documented defaults", () => {
    const config = loadConfig({});
    expect(config.limits).toEqual({
      runsPerMinute: 300,
      concurrentRuns: 200,
      connectionsPerSubject: 1000,
      connectionsPerIp: 1000,
      publishEventsPerSecond: 10_000,
      newSessionsPerMinute: 300,
      requestsInFlightPerIp: 256,
    });
    expect(config.headersTimeoutMs).toBe(10_000);
    expect(config.requestTimeoutMs).toBe(30_000);
    expect(config.storeTimeoutMs).toBe(5_000);
    expect(config.runStoreOutageMs).toBe(3_000);
    expect(loadConfig({ RUN_STORE_OUTAGE_MS: "10000" }).runStoreOutageMs).toBe(10_000);
    expect(() => loadConfig({ RUN_STORE_OUTAGE_MS: "50" })).toThrow(/RUN_STORE_OUTAGE_MS/);
    expect(config.slowClientMaxBufferedBytes).toBe(1_048_576);
    expect(config.corsOrigins).toEqual([]);
    // No peer's X-Forwarded-For is believed unless the operator names its proxies.
    expect(config.trustProxy).toBe("false");
    expect(config.maxJsonDepth).toBe(32);
    expect(config.maxBodyBytes).toBe(1_048_576);
    expect(config.maxOutputTokens).toBeUndefined();
    expect(config.upstreamTimeoutMs).toBe(120_000);
  });

  it("lets one producer create 100 sessions at once twice in a minute", () => {
    expect(loadConfig({}).limits.newSessionsPerMinute).toBeGreaterThanOrEqual(200);
  });

  it("lets one client start 100 runs at once twice in a minute and watch them on one connection", () => {
    const config = loadConfig({});
    const headlineRuns = 100;
    expect(config.limits.concurrentRuns).toBeGreaterThanOrEqual(2 * headlineRuns);
    expect(config.limits.runsPerMinute).toBeGreaterThanOrEqual(2 * headlineRuns);
    expect(config.maxSessionsPerConnection).toBeGreaterThanOrEqual(headlineRuns);
    expect(config.maxSessionsPerConnection).toBeLessThanOrEqual(256);
    expect(config.limits.connectionsPerIp).toBeGreaterThanOrEqual(1000);
    expect(config.limits.connectionsPerSubject).toBeGreaterThanOrEqual(1000);
  });

  it("reads the limits, CORS origins and upstream caps", () => {
    const config = loadConfig({
      LIMIT_RUNS_PER_MINUTE: "3",
      LIMIT_CONCURRENT_RUNS: "2",
      LIMIT_CONNECTIONS_PER_SUBJECT: "4",
      LIMIT_CONNECTIONS_PER_IP: "5",
      LIMIT_PUBLISH_EVENTS_PER_SECOND: "6",
      LIMIT_REQUESTS_IN_FLIGHT_PER_IP: "7",
      CORS_ORIGINS: " https://a.example , https://b.example,, ",
      MAX_OUTPUT_TOKENS: "256",
      UPSTREAM_TIMEOUT_MS: "5000",
      MAX_JSON_DEPTH: "8",
    });
    expect(config.limits).toEqual({
      runsPerMinute: 3,
      concurrentRuns: 2,
      connectionsPerSubject: 4,
      connectionsPerIp: 5,
      publishEventsPerSecond: 6,
      newSessionsPerMinute: 300,
      requestsInFlightPerIp: 7,
    });
    expect(errorOf({ HEADERS_TIMEOUT_MS: "5000", REQUEST_TIMEOUT_MS: "1000" }).message).toContain(
      "HEADERS_TIMEOUT_MS",
    );
    expect(config.corsOrigins).toEqual(["https://a.example", "https://b.example"]);
    expect(config.maxOutputTokens).toBe(256);
    expect(config.upstreamTimeoutMs).toBe(5000);
    expect(config.maxJsonDepth).toBe(8);
  });

  it("calls Chat Completions unless OPENAI_API=responses; any other API is refused", () => {
    expect(loadConfig({}).openai.api).toBe("chat");
    expect(loadConfig({ OPENAI_API: "chat" }).openai.api).toBe("chat");
    expect(loadConfig({ OPENAI_API: "responses" }).openai.api).toBe("responses");
    expect(errorOf({ OPENAI_API: "completions" }).message).toContain("OPENAI_API");
  });

  it("reads the Redis URL and key prefix; a prefix with odd characters is refused", () => {
    const config = loadConfig({
      REDIS_URL: "rediss://gw:s3cret@redis.example:6380",
      REDIS_KEY_PREFIX: "prod:eu:",
    });
    expect(config.redisUrl).toBe("rediss://gw:s3cret@redis.example:6380");
    expect(config.keyPrefix).toBe("prod:eu:");
    expect(errorOf({ REDIS_KEY_PREFIX: "a b*" }).message).toContain("REDIS_KEY_PREFIX");
  });

  it("reads Sentinels and durable acknowledgements; refuses them half-set or mixed with REDIS_URL", () => {
    const config = loadConfig({
      REDIS_SENTINELS: "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
      REDIS_SENTINEL_NAME: "gw-primary",
      REDIS_PASSWORD: "data-secret",
      REDIS_SENTINEL_PASSWORD: "sentinel-secret",
      REDIS_WAIT_REPLICAS: "1",
      REDIS_WAIT_TIMEOUT_MS: "250",
    });
    expect(config.redisSentinel).toEqual({
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "sentinel-b", port: 26380 },
        { host: "::1", port: 26381 },
      ],
      name: "gw-primary",
      username: undefined,
      password: "data-secret",
      sentinelUsername: undefined,
      sentinelPassword: "sentinel-secret",
    });
    expect(config.redisWait).toEqual({ replicas: 1, timeoutMs: 250 });
    expect(loadConfig({}).redisWait).toEqual({ replicas: 0, timeoutMs: 1_000 });
    expect(loadConfig({ REDIS_SENTINELS: "s:26379" }).redisSentinel?.name).toBe("mymaster");
    expect(errorOf({ REDIS_SENTINELS: "s:26379,nope" }).message).toContain('REDIS_SENTINELS: "nope"');
    expect(errorOf({ REDIS_SENTINELS: "s:26379", REDIS_URL: "redis://r" }).message).toContain(
      "REDIS_SENTINELS and REDIS_URL",
    );
    expect(errorOf({ REDIS_WAIT_REPLICAS: "1" }).message).toContain("REDIS_WAIT_REPLICAS");
  });

  it("reads a Redis Cluster's nodes, credentials, TLS and durable acknowledgements; refuses it mixed with another topology", () => {
    const config = loadConfig({
      REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-b:7001,[::1]:7002",
      REDIS_USERNAME: "gateway",
      REDIS_PASSWORD: "data-secret",
      REDIS_CLUSTER_TLS: "true",
    });
    expect(config.redisCluster).toEqual({
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "redis-b", port: 7001 },
        { host: "::1", port: 7002 },
      ],
      username: "gateway",
      password: "data-secret",
      tls: true,
    });
    expect(config.redisUrl).toBeUndefined();
    expect(loadConfig({}).redisCluster).toBeUndefined();
    expect(loadConfig({ REDIS_CLUSTER_NODES: "r:7000" }).redisCluster?.tls).toBe(false);
    expect(errorOf({ REDIS_CLUSTER_NODES: "r:7000,nope" }).message).toContain('REDIS_CLUSTER_NODES: "nope"');
    const others: Array<Record<string, string>> = [
      { REDIS_URL: "redis://r" },
      { REDIS_SENTINELS: "s:26379" },
    ];
    for (const other of others) {
      expect(errorOf({ REDIS_CLUSTER_NODES: "r:7000", ...other }).message).toContain(
        "REDIS_CLUSTER_NODES: set one",
      );
    }
    // Durable acknowledgements on a cluster: WAIT on the primary owning each session.
    const durable = loadConfig({
      REDIS_CLUSTER_NODES: "r:7000",
      REDIS_WAIT_REPLICAS: "1",
      REDIS_WAIT_TIMEOUT_MS: "500",
    });
    expect(durable.redisCluster?.nodes).toEqual([{ host: "r", port: 7000 }]);
    expect(durable.redisWait).toEqual({ replicas: 1, timeoutMs: 500 });
    expect(errorOf({ REDIS_CLUSTER_NODES: "r:7000", REDIS_WAIT_REPLICAS: "-1" }).message).toContain(
      "REDIS_WAIT_REPLICAS",
    );
  });

  it("names every problem in ONE error", () => {
    const error = errorOf({
      LIMIT_RUNS_PER_MINUTE: "0",
      LIMIT_CONCURRENT_RUNS: "many",
      MAX_JSON_DEPTH: "1",
      AUTH_JWKS_URL: "nope",
      LOG_LEVEL: "loud",
      PORT: "-1",
    });
    for (const variable of [
      "LIMIT_RUNS_PER_MINUTE",
      "LIMIT_CONCURRENT_RUNS",
      "MAX_JSON_DEPTH",
      "AUTH_JWKS_URL",
      "LOG_LEVEL",
      "PORT",
    ]) {
      expect(error.message, variable).toContain(variable);
    }
    expect(error.message.split("\n").length).toBeGreaterThanOrEqual(7);
  });

  it("lists a bad variable and a cross-variable problem in the same error", () => {
    const production = errorOf({ NODE_ENV: "production", LIMIT_RUNS_PER_MINUTE: "0" });
    expect(production.message).toContain("LIMIT_RUNS_PER_MINUTE");
    expect(production.message).toContain("AUTH_MODE");
    const short = errorOf({ AUTH_JWT_SECRET: "short", PORT: "not-a-port" });
    expect(short.message).toContain("PORT");
    expect(short.message).toContain("AUTH_JWT_SECRET");
  });

  it("names every cross-variable problem in ONE error too", () => {
    const error = errorOf({ NODE_ENV: "production", AUTH_MODE: "jwt", AUTH_JWT_SECRET: "short" });
    expect(error.message).toContain("AUTH_JWT_SECRET: at least 32 characters");
    // AUTH_MODE=jwt with a (short) secret: the short secret is the problem, and the only one.
    expect(error.message.split("\n").length).toBe(2);
  });
});
