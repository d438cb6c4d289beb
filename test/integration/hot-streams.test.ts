/**
 * The stream routes are hot routes (src/http/front.ts), served by the gateway's own HTTP layer: an open
 * stream's request and response keep Node's own prototypes and carry no per-request logger, with the
 * gateway's headers (X-Request-Id, nosniff, CORS), JSON errors with their status and headers, per-IP
 * limits behind a trusted proxy, the access log lines (URL redacted), metrics and drain. Its routing
 * rule is its own: a percent-encoded id is decoded, other paths (a trailing slash, other case) are not
 * stream routes (404), and a stream request has no body.
 */
import { randomBytes } from "node:crypto";
import { request as httpRequest, IncomingMessage, ServerResponse } from "node:http";
import { SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createGateway, type Gateway } from "../../src/gateway.js";
import { listen } from "../../src/listen.js";
import {
  closedWithin,
  logLines,
  openSse,
  postJson,
  randomPrefix,
  request,
  type SseConnection,
} from "../helpers/index.js";

const SECRET = "stream-front-secret-0123456789-abcdefghijklmnop";
const ORIGIN = "https://app.example";
const WAIT_MS = 10_000;

type LogLine = Record<string, unknown> & { msg?: string; req?: { id?: string; url?: string } };

interface Instance {
  url: string;
  gateway: Gateway;
  /** Every request the server saw, as Node handed it over (and as it is after handling). */
  seen: Array<{ req: IncomingMessage; res: ServerResponse }>;
  logs: LogLine[];
  close(): Promise<void>;
}

async function startInstance(env: Record<string, string> = {}): Promise<Instance> {
  const { sink, lines: logs } = logLines<LogLine>();
  const config = loadConfig({
    LOG_LEVEL: "info",
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: randomPrefix(),
    AUTH_JWT_SECRET: SECRET,
    // Requests come as from clients behind a proxy on loopback (X-Forwarded-For): trusted on purpose.
    TRUST_PROXY: "loopback",
    ...env,
  });
  const gateway = await createGateway(config, {
    logger: pino({ level: "info" }, sink),
    defaultMetrics: false,
  });
  const seen: Instance["seen"] = [];
  const { server, port } = await listen(gateway.app, config, 0, "127.0.0.1");
  server.prependListener("request", (req, res) => seen.push({ req, res }));
  return {
    url: `http://127.0.0.1:${port}`,
    gateway,
    seen,
    logs,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await gateway.close();
    },
  };
}

function mint(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));
}

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const newId = (label: string) => `${label}-${randomBytes(5).toString("hex")}`;

/** A raw GET with a body (fetch refuses one). */
function getWithBody(
  url: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: "GET",
      headers: { ...headers, "content-type": "application/json", "content-length": String(body.length) },
      agent: false,
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.end(body);
  });
}

describe("the hot stream routes", () => {
  let gw: Instance;
  let admin: string;
  let reader: string;
  const opened: SseConnection[] = [];

  const api = (path: string) => `${gw.url}/api/v1${path}`;
  const bearer = (token: string, extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${token}`,
    ...extra,
  });
  async function publish(id: string, type = "token"): Promise<string> {
    const res = await postJson(
      api(`/sessions/${id}/events`),
      { events: [{ type, data: {} }] },
      bearer(admin),
    );
    expect(res.status, res.text).toBe(202);
    return res.body.ids[0] as string;
  }
  async function open(path: string, headers: Record<string, string> = {}): Promise<SseConnection> {
    const stream = await openSse(api(path), { headers });
    opened.push(stream);
    return stream;
  }
  /** What the server saw for the request to `/api/v1${path}` (Express keeps the URL as `originalUrl`). */
  const serverSide = (path: string) => {
    const urlOf = (req: IncomingMessage & { originalUrl?: string }) => req.originalUrl ?? req.url;
    const found = gw.seen.findLast((entry) => urlOf(entry.req) === `/api/v1${path}`);
    if (!found) throw new Error(`the server saw no request for ${path}`);
    return found;
  };

  beforeAll(async () => {
    gw = await startInstance({ CORS_ORIGINS: ORIGIN, LIMIT_CONNECTIONS_PER_IP: "1" });
    admin = await mint({ sub: "front-admin", scope: "admin" });
    reader = await mint({ sub: "front-reader", scope: "subscribe", sessions: ["front-*"] });
  });
  afterAll(async () => {
    for (const stream of opened) stream.close();
    await gw?.close();
  });

  it("serves both stream routes without Express's per-request state, logging open and close once", async () => {
    const id = newId("front");
    await publish(id);
    const single = `/sessions/${id}/stream?access_token=${reader}`;
    const stream = await open(single, { "x-forwarded-for": "203.0.113.10", "x-request-id": "front-req-1" });
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(stream.headers["x-request-id"]).toBe("front-req-1");
    expect(stream.headers["x-content-type-options"]).toBe("nosniff");
    await stream.waitForEvent("token");

    const { req, res } = serverSide(single);
    expect(Object.getPrototypeOf(req)).toBe(IncomingMessage.prototype);
    expect(Object.getPrototypeOf(res)).toBe(ServerResponse.prototype);
    expect("log" in req).toBe(false);
    expect("locals" in res).toBe(false);

    const linesOf = (requestId: string) => gw.logs.filter((line) => line.req?.id === requestId);
    const openedLine = linesOf("front-req-1").find((line) => line.msg === "stream opened");
    expect(openedLine?.req?.url).toBe(`/api/v1/sessions/${id}/stream?access_token=[redacted]`);
    expect(JSON.stringify(gw.logs)).not.toContain(reader);
    stream.close();
    await waitUntil(() => linesOf("front-req-1").length === 2, "the close to be logged");
    expect(linesOf("front-req-1")[1]).toMatchObject({
      msg: "request aborted",
      res: { statusCode: 200 },
      responseTime: expect.any(Number),
    });

    // The multiplexed route; this one is ended by the server when its session ends.
    const mux = `/stream?sessions=${id}`;
    const muxStream = await open(mux, bearer(reader, { "x-forwarded-for": "203.0.113.11" }));
    expect(muxStream.status).toBe(200);
    const requestId = muxStream.headers["x-request-id"] as string;
    expect(requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(Object.getPrototypeOf(serverSide(mux).req)).toBe(IncomingMessage.prototype);
    await muxStream.waitForEvent(`${id}:token`);
    await publish(id, "done");
    await closedWithin(muxStream);
    await waitUntil(() => linesOf(requestId).length === 2, "the close to be logged");
    expect(linesOf(requestId).map((line) => line.msg)).toEqual(["stream opened", "request completed"]);
  });

  it("answers HEAD with the head only, and counts open streams in the metrics", async () => {
    const id = newId("front");
    await publish(id);
    const head = await fetch(api(`/stream?sessions=${id}`), { method: "HEAD", headers: bearer(reader) });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const gauge = async () =>
      (await gw.gateway.context.metrics.openConnections.get()).values.find(
        (value) => value.labels.kind === "multiplexed",
      )?.value ?? 0;
    await waitUntil(() => gw.gateway.context.streams.size === 0, "the HEAD stream to close");
    expect(await gauge()).toBe(0);
    const stream = await open(
      `/stream?sessions=${id}`,
      bearer(reader, { "x-forwarded-for": "203.0.113.12" }),
    );
    expect(stream.status).toBe(200);
    expect(await gauge()).toBe(1);
    stream.close();
    await waitUntil(() => gw.gateway.context.streams.size === 0, "the stream to close");
    expect(await gauge()).toBe(0);
  });

  it("answers errors as JSON with their status and headers, as every other route does", async () => {
    const id = newId("front");
    await publish(id);
    const expectError = async (
      path: string,
      headers: Record<string, string>,
      status: number,
      code: string,
      extraHeaders: Record<string, string | RegExp> = {},
    ) => {
      const res = await request("GET", api(path), {
        headers: { "x-forwarded-for": "203.0.113.20", ...headers },
      });
      expect(res.status, res.text).toBe(status);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      expect(res.body).toEqual({ error: { code, message: expect.any(String) } });
      expect(res.headers.get("x-request-id")).toMatch(/.+/);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      for (const [name, value] of Object.entries(extraHeaders)) expect(res.headers.get(name)).toMatch(value);
      return res;
    };
    await expectError(`/stream?sessions=${id}`, {}, 401, "missing_token", {
      "www-authenticate": /^Bearer error="invalid_request"$/,
    });
    await expectError(`/sessions/${id}/stream`, { authorization: "Bearer nope" }, 401, "invalid_token", {
      "www-authenticate": /^Bearer error="invalid_token"$/,
    });
    const noScope = await mint({ sub: "front-publisher", scope: "publish" });
    await expectError(`/stream?sessions=${id}`, bearer(noScope), 403, "insufficient_scope");
    await expectError(`/stream?sessions=${id}&subscription=x`, bearer(reader), 400, "invalid_request");
    await expectError(
      `/sessions/${id}/stream`,
      bearer(reader, { "last-event-id": "nope" }),
      400,
      "invalid_last_event_id",
    );
    await expectError(`/sessions/front-missing-${id}/stream`, bearer(reader), 404, "not_found");
    // Outside its claim: answered as a missing session (no existence oracle).
    await expectError(`/sessions/other-${id}/stream`, bearer(reader), 404, "not_found");
    const withId = await expectError(
      `/stream?sessions=${id}`,
      { "x-request-id": "front-err-1" },
      401,
      "missing_token",
    );
    expect(withId.headers.get("x-request-id")).toBe("front-err-1");
    // Logged like any request, token-free.
    await waitUntil(
      () => gw.logs.some((line) => line.req?.id === "front-err-1" && line.msg === "request completed"),
      "the refusal to be logged",
    );

    gw.gateway.context.state.draining = true;
    try {
      await expectError(`/stream?sessions=${id}`, bearer(reader), 503, "draining", { "retry-after": /^1$/ });
      await expectError(`/sessions/${id}/stream`, bearer(reader), 503, "draining", { "retry-after": /^1$/ });
    } finally {
      gw.gateway.context.state.draining = false;
    }

    // Resuming after the end: 204, nothing to send, with the request id.
    const end = await publish(id, "done");
    const finished = await fetch(api(`/sessions/${id}/stream`), {
      headers: bearer(reader, { "last-event-id": end, "x-request-id": "front-204" }),
    });
    expect(finished.status).toBe(204);
    expect(finished.headers.get("x-request-id")).toBe("front-204");
    expect(await finished.text()).toBe("");
  });

  it("counts connections per client address behind a trusted proxy (X-Forwarded-For from loopback)", async () => {
    const id = newId("front");
    await publish(id);
    const first = await open(`/stream?sessions=${id}`, bearer(reader, { "x-forwarded-for": "203.0.113.30" }));
    expect(first.status).toBe(200);
    const refused = await request("GET", api(`/sessions/${id}/stream`), {
      headers: bearer(reader, { "x-forwarded-for": "203.0.113.30" }),
    });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe("too_many_connections");
    expect(refused.headers.get("retry-after")).toBe("5");
    const other = await open(`/sessions/${id}/stream`, bearer(reader, { "x-forwarded-for": "203.0.113.31" }));
    expect(other.status).toBe(200);
    first.close();
    other.close();
  });

  it("sends CORS headers on streams and on their errors; preflight is answered as before", async () => {
    const id = newId("front");
    await publish(id);
    const stream = await open(
      `/stream?sessions=${id}`,
      bearer(reader, { origin: ORIGIN, "x-forwarded-for": "203.0.113.40" }),
    );
    expect(stream.status).toBe(200);
    expect(stream.headers["access-control-allow-origin"]).toBe(ORIGIN);
    expect(stream.headers.vary).toBe("Origin");
    expect(stream.headers["access-control-expose-headers"]).toBe(
      "X-Session-Id,X-Request-Id,Retry-After,Idempotent-Replayed",
    );
    stream.close();

    const stranger = await open(
      `/sessions/${id}/stream`,
      bearer(reader, { origin: "https://elsewhere.example", "x-forwarded-for": "203.0.113.41" }),
    );
    expect(stranger.status).toBe(200);
    expect(stranger.headers["access-control-allow-origin"]).toBeUndefined();
    expect(stranger.headers.vary).toBe("Origin");
    stranger.close();

    const refused = await request("GET", api(`/stream?sessions=${id}`), { headers: { origin: ORIGIN } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe(ORIGIN);

    const preflight = await fetch(api(`/stream?sessions=${id}`), {
      method: "OPTIONS",
      headers: {
        origin: ORIGIN,
        "access-control-request-method": "GET",
        "access-control-request-headers": "last-event-id",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(preflight.headers.get("access-control-allow-headers")).toBe(
      "Authorization,Content-Type,Idempotency-Key,Last-Event-ID,X-Request-Id",
    );
    expect(preflight.headers.get("access-control-max-age")).toBe("600");
  });

  it("routes by its own rule: a percent-encoded id is decoded; other paths are not stream routes; no body", async () => {
    const id = newId("front");
    await publish(id);
    const encoded = `/sessions/%66ront${id.slice("front".length)}/stream`;
    const stream = await open(encoded, bearer(reader, { "x-forwarded-for": "203.0.113.50" }));
    expect(stream.status).toBe(200);
    await stream.waitForEvent("token");
    expect(Object.getPrototypeOf(serverSide(encoded).req)).toBe(IncomingMessage.prototype);
    stream.close();
    for (const path of [`/sessions/${id}/stream/`, `/STREAM?sessions=${id}`]) {
      const res = await request("GET", api(path), { headers: bearer(reader) });
      expect(res.status, path).toBe(404);
      expect(res.body.error.code).toBe("not_found");
    }
    const wrongMethod = await request("POST", api(`/stream?sessions=${id}`), {
      headers: bearer(reader),
      body: {},
    });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("GET");
    const withBody = await getWithBody(api(`/stream?sessions=${id}`), "{}", bearer(reader));
    expect(withBody.status).toBe(400);
    expect(JSON.parse(withBody.text).error.code).toBe("unexpected_body");
  });

  it("drains: every open stream is sent away with a final retry", async () => {
    const id = newId("front");
    await publish(id);
    const stream = await open(
      `/stream?sessions=${id}`,
      bearer(reader, { "x-forwarded-for": "203.0.113.60" }),
    );
    expect(stream.status).toBe(200);
    await stream.waitForEvent(`${id}:token`);
    await gw.gateway.context.streams.closeAll(0, 1000);
    await closedWithin(stream);
    // The first `retry:` opened the stream; the last one came with its end.
    expect(stream.raw().match(/^retry: \d+$/gm)).toHaveLength(2);
    expect(gw.gateway.context.streams.size).toBe(0);
  });
});
