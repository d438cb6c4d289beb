/**
 * Authentication and authorization with an HS256 secret, over Redis: every route × every way a token
 * can be missing, wrong or insufficient; the three places a token may come from; ownership of sessions
 * and subscription sets; forbidden sessions on multiplexed connections; the filtered `@sessions` feed;
 * streams closed at token expiry and resumed with a fresh token; generated ids under a `prefix*` claim.
 */
import { randomBytes } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type JsonBody,
  openSse,
  type SseConnection,
  type SseEvent,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const SECRET = "auth-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
const ISSUER = "https://issuer.auth.test";
const AUDIENCE = "sse-gateway-auth-test";
const STREAM_WAIT_MS = 10_000;

const newId = (label: string) => `${label}-${randomBytes(5).toString("hex")}`;

interface Claims {
  sub?: string;
  scope?: string;
  sessions?: string[];
}

interface MintOptions {
  /** Seconds from now until `exp` (negative: already expired; null: no `exp`). Default one hour. */
  expiresIn?: number | null;
  /** Seconds from now until `nbf`. */
  notBefore?: number;
  secret?: string;
  audience?: string;
  issuer?: string;
}

async function mint(claims: Claims, options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ ...claims } as Record<string, unknown>)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt(now - 10);
  if (options.expiresIn !== null) jwt.setExpirationTime(now + (options.expiresIn ?? 3600));
  if (options.notBefore !== undefined) jwt.setNotBefore(now + options.notBefore);
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

interface Reply {
  status: number;
  headers: Headers;
  body: JsonBody;
}

/** One request; an SSE response is cancelled as soon as its headers are in (only the status matters). */
async function hit(
  method: string,
  url: string,
  options: { token?: string | undefined; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {
    accept: "application/json, text/event-stream",
    ...options.headers,
  };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const controller = new AbortController();
  const res = await fetch(url, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: controller.signal,
  });
  if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    controller.abort();
    return { status: res.status, headers: res.headers, body: undefined };
  }
  const text = await res.text();
  let body: JsonBody;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, headers: res.headers, body };
}

function expectError(reply: Reply, status: number, code: string): void {
  expect({ status: reply.status, code: reply.body?.error?.code }).toEqual({ status, code });
  expect(typeof reply.body.error.message).toBe("string");
  if (status === 401) expect(reply.headers.get("www-authenticate") ?? "").toMatch(/^Bearer /);
}

const tokenEvent = (content: string) => ({ type: "token", data: { content } });
const doneEvent = (id: string) => ({
  type: "done",
  data: { session_id: id, total_tokens: 0, finish_reason: "stop" },
});

/** Names of a multiplexed connection's events for one session (`<id>:<type>` → type). */
function typesOf(events: readonly SseEvent[], sessionId: string): string[] {
  return events
    .filter((event) => event.event.startsWith(`${sessionId}:`))
    .map((event) => event.event.slice(sessionId.length + 1));
}

describe("auth (HS256) over redis", () => {
  let gw: TestGateway;
  const opened: SseConnection[] = [];
  const track = (connection: SseConnection) => {
    opened.push(connection);
    return connection;
  };

  const OWNER = `owner-${randomBytes(4).toString("hex")}`;
  let ownerToken: string;
  let adminToken: string;

  beforeAll(async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { AUTH_JWT_SECRET: SECRET, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE },
    });
    ownerToken = await mint({ sub: OWNER, scope: "run publish subscribe" });
    adminToken = await mint({ sub: "root", scope: "admin" });
  });
  afterAll(async () => {
    for (const connection of opened) connection.close();
    await gw?.close();
  });

  const api = (path: string) => `${gw.url}/api/v1${path}`;

  async function publish(token: string, sessionId: string, events: unknown[]): Promise<string[]> {
    const reply = await hit("POST", api(`/sessions/${sessionId}/events`), { token, body: { events } });
    expect(reply.status, JSON.stringify(reply.body)).toBe(202);
    return reply.body.ids as string[];
  }

  async function createSet(token: string, sessions: string[]): Promise<string> {
    const reply = await hit("POST", api("/subscriptions"), { token, body: { sessions } });
    expect(reply.status, JSON.stringify(reply.body)).toBe(201);
    return reply.body.id as string;
  }

  /** A running session (created by a producer) and a subscription set, both owned by OWNER. */
  async function ownedResources(): Promise<{ session: string; set: string }> {
    const session = newId("own");
    await publish(ownerToken, session, [tokenEvent("a")]);
    const set = await createSet(ownerToken, [session]);
    return { session, set };
  }

  // ---- every route × every failure -----------------------------------------------------------------

  interface Route {
    name: string;
    method: string;
    path: (r: { session: string; set: string }) => string;
    body?: (r: { session: string; set: string }) => unknown;
    /** Scopes that lack what the route needs. */
    withoutScope: string;
    /**
     * The claims of a token that has the route's scope but reaches a session (or set) outside its
     * claim; null where the route names no existing session or set (see the test below it).
     */
    outside: Claims | null;
    /** A session the token may not read is answered as a missing one (404), not as forbidden. */
    outsideIsMissing?: boolean;
  }

  const outsideClaim: Claims = { sub: "stranger", scope: "run publish subscribe", sessions: ["mine-*"] };
  const routes: Route[] = [
    {
      name: "POST /agent/stream",
      method: "POST",
      path: () => "/agent/stream",
      body: () => ({ message: "hello [tokens=2]" }),
      withoutScope: "publish subscribe",
      // Only exact ids in the claim: the gateway cannot generate an id inside it.
      outside: { sub: "stranger", scope: "run subscribe", sessions: ["exactly-this-one"] },
    },
    {
      name: "POST /sessions",
      method: "POST",
      path: () => "/sessions",
      body: () => ({ message: "hello [tokens=2]", id: newId("outside") }),
      withoutScope: "publish subscribe",
      outside: outsideClaim,
    },
    {
      name: "GET /sessions/:id",
      method: "GET",
      path: (r) => `/sessions/${r.session}`,
      withoutScope: "run publish",
      outside: outsideClaim,
      outsideIsMissing: true,
    },
    {
      name: "GET /sessions/:id/stream",
      method: "GET",
      path: (r) => `/sessions/${r.session}/stream`,
      withoutScope: "run publish",
      outside: outsideClaim,
      outsideIsMissing: true,
    },
    {
      name: "POST /sessions/:id/events",
      method: "POST",
      path: (r) => `/sessions/${r.session}/events`,
      body: () => ({ events: [tokenEvent("x")] }),
      withoutScope: "run subscribe",
      outside: outsideClaim,
      outsideIsMissing: true,
    },
    {
      name: "POST /sessions/:id/cancel",
      method: "POST",
      path: (r) => `/sessions/${r.session}/cancel`,
      withoutScope: "subscribe",
      outside: outsideClaim,
      outsideIsMissing: true,
    },
    {
      name: "GET /stream?sessions=",
      method: "GET",
      path: (r) => `/stream?sessions=${r.session}`,
      withoutScope: "run publish",
      outside: outsideClaim,
      outsideIsMissing: true,
    },
    {
      name: "POST /subscriptions",
      method: "POST",
      path: () => "/subscriptions",
      body: (r) => ({ sessions: [r.session] }),
      withoutScope: "run publish",
      outside: null,
    },
    {
      name: "GET /subscriptions/:sid",
      method: "GET",
      path: (r) => `/subscriptions/${r.set}`,
      withoutScope: "run publish",
      outside: outsideClaim,
    },
    {
      name: "PATCH /subscriptions/:sid",
      method: "PATCH",
      path: (r) => `/subscriptions/${r.set}`,
      body: (r) => ({ add: [r.session] }),
      withoutScope: "run publish",
      outside: outsideClaim,
    },
    {
      name: "GET /stream?subscription=",
      method: "GET",
      path: (r) => `/stream?subscription=${r.set}`,
      withoutScope: "run publish",
      outside: outsideClaim,
    },
  ];

  interface Case {
    name: string;
    token: (route: Route) => Promise<string | undefined>;
    status: number;
    code: string;
    /** Routes the case applies to (default all). */
    applies?: (route: Route) => boolean;
  }

  const everything = "run publish subscribe";
  const cases: Case[] = [
    { name: "no token", token: () => Promise.resolve(undefined), status: 401, code: "missing_token" },
    {
      name: "an expired token",
      token: () => mint({ sub: OWNER, scope: everything }, { expiresIn: -3600 }),
      status: 401,
      code: "token_expired",
    },
    {
      name: "a token without exp (it would never expire)",
      token: () => mint({ sub: OWNER, scope: everything }, { expiresIn: null }),
      status: 401,
      code: "invalid_token",
    },
    {
      name: "an exp further away than AUTH_MAX_TOKEN_LIFETIME_SECONDS (24 h by default)",
      token: () => mint({ sub: OWNER, scope: everything }, { expiresIn: 86_400 + 3_600 }),
      status: 401,
      code: "invalid_token",
    },
    {
      name: "a wrong signature",
      token: () => mint({ sub: OWNER, scope: everything }, { secret: `${SECRET}-but-not-this-one` }),
      status: 401,
      code: "invalid_token",
    },
    {
      name: "a wrong audience",
      token: () => mint({ sub: OWNER, scope: everything }, { audience: "some-other-service" }),
      status: 401,
      code: "invalid_token",
    },
    {
      name: "a wrong issuer",
      token: () => mint({ sub: OWNER, scope: everything }, { issuer: "https://evil.test" }),
      status: 401,
      code: "invalid_token",
    },
    {
      name: "a token not valid yet (nbf)",
      token: () => mint({ sub: OWNER, scope: everything }, { notBefore: 600 }),
      status: 401,
      code: "invalid_token",
    },
    {
      name: "a missing scope",
      token: (route) => mint({ sub: OWNER, scope: route.withoutScope }),
      status: 403,
      code: "insufficient_scope",
    },
    {
      name: "a session outside its claim",
      token: (route) => mint(route.outside!),
      status: 403,
      code: "forbidden",
      // POST /subscriptions names no existing session or set: see the test after the table.
      applies: (route) => route.outside !== null,
    },
  ];

  const table = routes.flatMap((route) =>
    cases
      .filter((c) => c.applies?.(route) ?? true)
      .map((c) =>
        c.code === "forbidden" && route.outsideIsMissing ? { ...c, status: 404, code: "not_found" } : c,
      )
      .map((c) => ({ label: `${route.name} with ${c.name}`, route, c })),
  );

  it.each(table)("$label is refused", async ({ route, c }) => {
    const resources = await ownedResources();
    const reply = await hit(route.method, api(route.path(resources)), {
      token: await c.token(route),
      body: route.body?.(resources),
    });
    expectError(reply, c.status, c.code);
    // Nothing was done on the refused request's behalf.
    const info = await gw.gateway.context.store.getSession(resources.session);
    expect(info?.status).toBe("running");
    const read = await gw.gateway.context.store.read(resources.session, null, 100);
    expect(read.events.map((event) => event.type)).toEqual(["token"]);
    const members = await gw.gateway.context.subscriptions.get(resources.set);
    expect([...(members?.keys() ?? [])]).toEqual([resources.session]);
  });

  it.each(routes)("$name accepts the owner's token with the right scope", async (route) => {
    const resources = await ownedResources();
    const reply = await hit(route.method, api(route.path(resources)), {
      token: ownerToken,
      body: route.body?.(resources),
    });
    expect(reply.status, JSON.stringify(reply.body)).toBeGreaterThanOrEqual(200);
    expect(reply.status).toBeLessThan(300);
  });

  it("lets a token create a subscription set naming sessions outside its claim, but not read them", async () => {
    const { session } = await ownedResources();
    const strangerToken = await mint(outsideClaim);
    const set = await createSet(strangerToken, [session]);
    const stream = track(
      await openSse(api(`/stream?subscription=${set}`), { headers: bearer(strangerToken) }),
    );
    expect(stream.status).toBe(200);
    await stream.waitForEvent(`${session}:forbidden`, STREAM_WAIT_MS);
    expect(typesOf(stream.events, session)).toEqual(["forbidden"]);
    stream.close();
  });

  // ---- where the token comes from --------------------------------------------------------------------

  describe("the token's places", () => {
    let session: string;
    beforeAll(async () => {
      ({ session } = await ownedResources());
    });

    it("is read from the Authorization header", async () => {
      const reply = await hit("GET", api(`/sessions/${session}`), { headers: bearer(ownerToken) });
      expect(reply.status).toBe(200);
      expect(reply.body.id).toBe(session);
    });

    it("is read from the sse_token cookie", async () => {
      const reply = await hit("GET", api(`/sessions/${session}`), {
        headers: { cookie: `theme=dark; sse_token=${ownerToken}; other=1` },
      });
      expect(reply.status).toBe(200);
      expect(reply.body.id).toBe(session);
    });

    it("is read from ?access_token= (EventSource cannot set headers)", async () => {
      const reply = await hit("GET", api(`/sessions/${session}?access_token=${ownerToken}`));
      expect(reply.status).toBe(200);
      const stream = track(
        await openSse(api(`/sessions/${session}/stream?access_token=${encodeURIComponent(ownerToken)}`)),
      );
      expect(stream.status).toBe(200);
      await stream.waitForEvent("token", STREAM_WAIT_MS);
      stream.close();
      const mux = track(await openSse(api(`/stream?sessions=${session}&access_token=${ownerToken}`)));
      expect(mux.status).toBe(200);
      await mux.waitForEvent(`${session}:token`, STREAM_WAIT_MS);
      mux.close();
    });

    it("refuses a bad token in any place", async () => {
      const bad = await mint({ sub: OWNER, scope: everything }, { secret: `${SECRET}-wrong` });
      const unsigned = new UnsecuredJWT({ sub: OWNER, scope: "admin" })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime("1h")
        .encode();
      for (const reply of [
        await hit("GET", api(`/sessions/${session}`), { headers: bearer(bad) }),
        await hit("GET", api(`/sessions/${session}`), { headers: { cookie: `sse_token=${bad}` } }),
        await hit("GET", api(`/sessions/${session}?access_token=${bad}`)),
        await hit("GET", api(`/sessions/${session}`), { headers: { authorization: "Bearer not.a.jwt" } }),
        await hit("GET", api(`/sessions/${session}`), { headers: bearer(unsigned) }),
        await hit("GET", api(`/sessions/${session}`), {
          headers: { authorization: `Bearer ${"a".repeat(9000)}` },
        }),
      ]) {
        expectError(reply, 401, "invalid_token");
      }
      expectError(
        await hit("GET", api(`/sessions/${session}`), { headers: { authorization: `Basic ${ownerToken}` } }),
        401,
        "missing_token",
      );
      expectError(await hit("GET", api(`/sessions/${session}?access_token=`)), 401, "missing_token");
    });

    it("takes the cookie for reads only, and for writes from the gateway's own origin or a listed one (no CSRF)", async () => {
      const running = newId("csrf");
      await publish(ownerToken, running, [tokenEvent("a")]);
      const cookie = `sse_token=${ownerToken}`;
      const form = { "content-type": "application/x-www-form-urlencoded", cookie };
      // What a cross-site form posts: the browser adds the cookie (and its page's Origin, or none).
      for (const origin of ["https://evil.example", "null", undefined]) {
        const headers: Record<string, string> = origin === undefined ? form : { ...form, origin };
        for (const path of [`/sessions/${running}/cancel`, `/sessions/${running}/events`, "/agent/stream"]) {
          const res = await fetch(api(path), { method: "POST", headers, body: "a=1" });
          const body = await res.json();
          expect({ path, origin, status: res.status, code: body.error?.code }).toEqual({
            path,
            origin,
            status: 401,
            code: "missing_token",
          });
        }
      }
      expect((await gw.gateway.context.store.getSession(running))?.status).toBe("running");
      // Reads with the cookie, from anywhere (a page elsewhere cannot read the answer without CORS).
      const read = await fetch(api(`/sessions/${running}`), {
        headers: { cookie, origin: "https://evil.example" },
      });
      expect(read.status).toBe(200);
      await read.arrayBuffer();
      // A write from the gateway's own origin.
      const cancelled = await fetch(api(`/sessions/${running}/cancel`), {
        method: "POST",
        headers: { cookie, origin: gw.url },
      });
      expect(cancelled.status).toBe(202);
      await cancelled.arrayBuffer();
    });

    it("leaves /healthz, /readyz and /metrics open", async () => {
      for (const path of ["/healthz", "/readyz", "/metrics"]) {
        const res = await fetch(`${gw.url}${path}`);
        await res.arrayBuffer();
        expect(res.status, path).toBe(200);
      }
    });
  });

  // ---- ownership ---------------------------------------------------------------------------------------

  describe("ownership", () => {
    const A = newId("alice");
    const B = newId("bob");
    let aToken: string;
    let bToken: string;
    beforeAll(async () => {
      aToken = await mint({ sub: A, scope: "run publish subscribe" });
      bToken = await mint({ sub: B, scope: "run publish subscribe" });
    });

    it("a session created by A is A's (no claim needed), not B's; admin reads it", async () => {
      const created = await hit("POST", api("/sessions"), {
        token: aToken,
        body: { message: "mine [tokens=3]" },
      });
      expect(created.status).toBe(201);
      const id = created.body.id as string;

      const mine = track(await openSse(api(`/sessions/${id}/stream`), { headers: bearer(aToken) }));
      expect(mine.status).toBe(200);
      await mine.closed;
      expect(mine.events.map((event) => event.event)).toEqual([
        "start",
        "token",
        "token",
        "token",
        "usage",
        "done",
      ]);
      expect((await hit("GET", api(`/sessions/${id}`), { token: aToken })).status).toBe(200);

      expectError(await hit("GET", api(`/sessions/${id}`), { token: bToken }), 404, "not_found");
      expectError(await hit("GET", api(`/sessions/${id}/stream`), { token: bToken }), 404, "not_found");
      expectError(
        await hit("POST", api(`/sessions/${id}/events`), {
          token: bToken,
          body: { events: [tokenEvent("x")] },
        }),
        404,
        "not_found",
      );
      expectError(await hit("POST", api(`/sessions/${id}/cancel`), { token: bToken }), 404, "not_found");
      expectError(await hit("GET", api(`/stream?sessions=${id}`), { token: bToken }), 404, "not_found");

      const admin = await hit("GET", api(`/sessions/${id}`), { token: adminToken });
      expect(admin.status).toBe(200);
      expect(admin.body.status).toBe("done");
      const adminStream = track(
        await openSse(api(`/sessions/${id}/stream`), { headers: bearer(adminToken) }),
      );
      await adminStream.closed;
      expect(adminStream.events.at(-1)?.event).toBe("done");
    });

    it("a session published by B is B's: A may not read, append to or cancel it", async () => {
      const id = newId("bob-producer");
      await publish(bToken, id, [tokenEvent("secret")]);
      expectError(await hit("GET", api(`/sessions/${id}`), { token: aToken }), 404, "not_found");
      expectError(
        await hit("POST", api(`/sessions/${id}/events`), {
          token: aToken,
          body: { events: [doneEvent(id)] },
        }),
        404,
        "not_found",
      );
      expectError(await hit("POST", api(`/sessions/${id}/cancel`), { token: aToken }), 404, "not_found");
      expect((await gw.gateway.context.store.getSession(id))?.status).toBe("running");
      expect((await hit("POST", api(`/sessions/${id}/cancel`), { token: bToken })).status).toBe(202);
    });

    it("a subscription set belongs to its creator: B can neither read, use nor PATCH A's", async () => {
      const session = newId("alice-s");
      await publish(aToken, session, [tokenEvent("a")]);
      const set = await createSet(aToken, [session]);

      expectError(await hit("GET", api(`/subscriptions/${set}`), { token: bToken }), 403, "forbidden");
      expectError(
        await hit("PATCH", api(`/subscriptions/${set}`), { token: bToken, body: { remove: [session] } }),
        403,
        "forbidden",
      );
      expectError(await hit("GET", api(`/stream?subscription=${set}`), { token: bToken }), 403, "forbidden");
      // The refused PATCH changed nothing.
      const mine = await hit("GET", api(`/subscriptions/${set}`), { token: aToken });
      expect(mine.body.sessions).toEqual([session]);
      const patched = await hit("PATCH", api(`/subscriptions/${set}`), {
        token: aToken,
        body: { add: ["@sessions"] },
      });
      expect(patched.status).toBe(200);
      expect((await hit("GET", api(`/subscriptions/${set}`), { token: adminToken })).status).toBe(200);
    });
  });

  // ---- multiplexed connections --------------------------------------------------------------------------

  describe("multiplexed connections", () => {
    const A = newId("carol");
    const B = newId("dave");
    let aToken: string;
    let bToken: string;
    beforeAll(async () => {
      aToken = await mint({ sub: A, scope: "publish subscribe" });
      bToken = await mint({ sub: B, scope: "publish subscribe" });
    });

    it("streams the allowed sessions and says `<id>:forbidden {}` once for the others", async () => {
      const a1 = newId("a1");
      const a2 = newId("a2");
      const b1 = newId("b1");
      await publish(aToken, a1, [tokenEvent("one")]);
      await publish(aToken, a2, [tokenEvent("two")]);
      await publish(bToken, b1, [tokenEvent("hidden")]);

      const mux = track(
        await openSse(api(`/stream?sessions=${a1},${b1},${a2}`), { headers: bearer(aToken) }),
      );
      expect(mux.status).toBe(200);
      const connected = await mux.waitForEvent("connected", STREAM_WAIT_MS);
      expect(JSON.parse(connected.data).sessions).toEqual([a1, b1, a2]);
      await mux.waitFor(
        (events) => typesOf(events, a1).includes("token") && typesOf(events, a2).includes("token"),
        STREAM_WAIT_MS,
      );
      await publish(bToken, b1, [tokenEvent("still hidden"), doneEvent(b1)]);
      await publish(aToken, a1, [tokenEvent("more"), doneEvent(a1)]);
      await publish(aToken, a2, [doneEvent(a2)]);
      await mux.closed;

      expect(typesOf(mux.events, a1)).toEqual(["token", "token", "done"]);
      expect(typesOf(mux.events, a2)).toEqual(["token", "done"]);
      expect(typesOf(mux.events, b1)).toEqual(["forbidden"]);
      const forbidden = mux.events.find((event) => event.event === `${b1}:forbidden`)!;
      expect(JSON.parse(forbidden.data)).toEqual({});
      expect(forbidden.id).toBeUndefined();
      expect(mux.raw()).not.toContain("hidden");
    });

    it("refuses the whole connection (404, as for a missing session) when no session is readable", async () => {
      const b1 = newId("b-only");
      const b2 = newId("b-only");
      await publish(bToken, b1, [tokenEvent("x")]);
      await publish(bToken, b2, [tokenEvent("y")]);
      expectError(await hit("GET", api(`/stream?sessions=${b1},${b2}`), { token: aToken }), 404, "not_found");
      // A session that does not exist yet is readable only through a claim.
      expectError(
        await hit("GET", api(`/stream?sessions=${newId("nobody")}`), { token: aToken }),
        404,
        "not_found",
      );
    });

    it("a claimed prefix reaches sessions that do not exist yet, once created by anyone", async () => {
      const claimToken = await mint({ sub: newId("erin"), scope: "subscribe", sessions: ["shared-*"] });
      const later = newId("shared");
      const mux = track(await openSse(api(`/stream?sessions=${later}`), { headers: bearer(claimToken) }));
      expect(mux.status).toBe(200);
      await mux.waitForEvent(`${later}:unknown`, STREAM_WAIT_MS);
      await publish(bToken, later, [tokenEvent("hi"), doneEvent(later)]);
      await mux.closed;
      expect(typesOf(mux.events, later)).toEqual(["unknown", "token", "done"]);
    });

    it("a subscription set says forbidden for the members its owner may not read, also when added later", async () => {
      const a1 = newId("a-set");
      const b1 = newId("b-set");
      const b2 = newId("b-set");
      await publish(aToken, a1, [tokenEvent("visible")]);
      await publish(bToken, b1, [tokenEvent("hidden")]);
      await publish(bToken, b2, [tokenEvent("hidden too")]);
      const set = await createSet(aToken, [a1, b1]);
      const mux = track(await openSse(api(`/stream?subscription=${set}`), { headers: bearer(aToken) }));
      expect(mux.status).toBe(200);
      await mux.waitFor(
        (events) => typesOf(events, a1).includes("token") && typesOf(events, b1).includes("forbidden"),
        STREAM_WAIT_MS,
      );
      const patched = await hit("PATCH", api(`/subscriptions/${set}`), {
        token: aToken,
        body: { add: [b2] },
      });
      expect(patched.status).toBe(200);
      await mux.waitForEvent(`${b2}:forbidden`, STREAM_WAIT_MS);
      await publish(aToken, a1, [doneEvent(a1)]);
      await mux.waitFor((events) => typesOf(events, a1).includes("done"), STREAM_WAIT_MS);
      expect(typesOf(mux.events, b1)).toEqual(["forbidden"]);
      expect(typesOf(mux.events, b2)).toEqual(["forbidden"]);
      expect(mux.raw()).not.toContain("hidden");
      mux.close();
    });

    it("@sessions shows a non-admin only the sessions it may read; admin sees all", async () => {
      const ownerViewer = await mint({ sub: newId("viewer"), scope: "publish subscribe" });
      const claimViewer = await mint({ sub: newId("viewer"), scope: "subscribe", sessions: ["viewable-*"] });
      const someoneElse = await mint({ sub: newId("other"), scope: "publish subscribe" });

      const open = async (token: string) => {
        const feed = track(await openSse(api("/stream?sessions=@sessions"), { headers: bearer(token) }));
        expect(feed.status).toBe(200);
        await feed.waitForEvent("connected", STREAM_WAIT_MS);
        return feed;
      };
      const ownFeed = await open(ownerViewer);
      const claimFeed = await open(claimViewer);
      const adminFeed = await open(adminToken);

      const hidden = newId("hidden");
      const own = newId("own");
      const claimed = newId("viewable");
      const last = newId("last");
      await publish(someoneElse, hidden, [tokenEvent("x"), doneEvent(hidden)]);
      await publish(ownerViewer, own, [tokenEvent("x"), doneEvent(own)]);
      await publish(someoneElse, claimed, [tokenEvent("x"), doneEvent(claimed)]);
      // Created last by the owner viewer, in the claim: every feed waits for it, so anything
      // visible before it has arrived (the feed is ordered).
      const lastSession = `viewable-${last}`;
      await publish(ownerViewer, lastSession, [tokenEvent("x"), doneEvent(lastSession)]);

      const idsOf = (events: readonly SseEvent[], name: string) =>
        events
          .filter((event) => event.event === `@sessions:${name}`)
          .map((event) => JSON.parse(event.data).id);
      const settle = (feed: SseConnection) =>
        feed.waitFor((events) => idsOf(events, "ended").includes(lastSession), STREAM_WAIT_MS);
      await Promise.all([settle(ownFeed), settle(claimFeed), settle(adminFeed)]);

      expect(idsOf(ownFeed.events, "created")).toEqual([own, lastSession]);
      expect(idsOf(ownFeed.events, "ended")).toEqual([own, lastSession]);
      expect(idsOf(claimFeed.events, "created")).toEqual([claimed, lastSession]);
      expect(idsOf(claimFeed.events, "ended")).toEqual([claimed, lastSession]);
      expect(idsOf(adminFeed.events, "created")).toEqual(
        expect.arrayContaining([hidden, own, claimed, lastSession]),
      );
      expect(idsOf(adminFeed.events, "ended")).toEqual(
        expect.arrayContaining([hidden, own, claimed, lastSession]),
      );
      for (const feed of [ownFeed, claimFeed]) expect(feed.raw()).not.toContain(hidden);
      for (const feed of [ownFeed, claimFeed, adminFeed]) feed.close();
    });
  });

  describe("no existence oracle", () => {
    /** Every route that names one session, as a caller who may not read it asks. */
    const probes: Array<{ name: string; method: string; path: (id: string) => string; body?: unknown }> = [
      { name: "GET /api/v1/sessions/:id", method: "GET", path: (id) => `/api/v1/sessions/${id}` },
      { name: "its stream", method: "GET", path: (id) => `/api/v1/sessions/${id}/stream` },
      { name: "cancel", method: "POST", path: (id) => `/api/v1/sessions/${id}/cancel` },
      {
        name: "append",
        method: "POST",
        path: (id) => `/api/v1/sessions/${id}/events`,
        body: { events: [tokenEvent("x")] },
      },
      { name: "a multiplexed stream", method: "GET", path: (id) => `/api/v1/stream?sessions=${id}` },
      { name: "GET /v1/responses/:id", method: "GET", path: (id) => `/v1/responses/resp_${id}` },
      { name: "its cancel", method: "POST", path: (id) => `/v1/responses/resp_${id}/cancel` },
      {
        name: "a chat completion's stream",
        method: "GET",
        path: (id) => `/v1/chat/completions/${id}/stream`,
      },
    ];

    it.each(probes)("$name answers the same for another's session and a missing one", async (probe) => {
      const ownerSub = newId("hidden-owner");
      const owner = await mint({ sub: ownerSub, scope: "run publish subscribe" });
      const existing = newId("c-exists");
      await publish(owner, existing, [tokenEvent("secret")]);
      const missing = newId("c-missing");
      // One caller whose claim names neither id, and one reading only its own sessions (no claim):
      // the second could create the missing id by appending, so its append is not a probe.
      const callers = [
        await mint({ sub: newId("prober"), scope: "run publish subscribe", sessions: ["other-*"] }),
        ...(probe.name === "append"
          ? []
          : [await mint({ sub: newId("prober"), scope: "run publish subscribe" })]),
      ];
      for (const token of callers) {
        const answers = [];
        for (const id of [existing, missing]) {
          const reply = await hit(probe.method, `${gw.url}${probe.path(id)}`, { token, body: probe.body });
          const text = JSON.stringify(reply.body ?? {});
          answers.push({ status: reply.status, text: text.replaceAll(id, "<id>") });
        }
        expect(answers[0], probe.name).toEqual(answers[1]);
        expect(answers[0]!.status).toBe(404);
      }
      // Nothing was done to the existing session.
      const read = await gw.gateway.context.store.read(existing, null, 100);
      expect(read.events.map((event) => event.type)).toEqual(["token"]);
    });
  });

  describe("the owner on @sessions", () => {
    it("is shown to the owner itself and to admin, never to a reader who sees the entry through a claim", async () => {
      const ownerSub = newId("owner-sub");
      const owner = await mint({ sub: ownerSub, scope: "publish subscribe" });
      const claimReader = await mint({ sub: newId("peer"), scope: "subscribe", sessions: ["visible-*"] });
      const open = async (token: string) => {
        const feed = track(await openSse(api("/stream?sessions=@sessions"), { headers: bearer(token) }));
        expect(feed.status).toBe(200);
        await feed.waitForEvent("connected", STREAM_WAIT_MS);
        return feed;
      };
      const feeds = {
        owner: await open(owner),
        claim: await open(claimReader),
        admin: await open(adminToken),
      };
      const id = `visible-${newId("o")}`;
      await publish(owner, id, [tokenEvent("x"), doneEvent(id)]);
      const entriesOf = (feed: SseConnection) =>
        feed.events
          .filter((event) => event.event.startsWith("@sessions:") && JSON.parse(event.data).id === id)
          .map((event) => JSON.parse(event.data) as { owner?: string });
      for (const feed of Object.values(feeds)) {
        await feed.waitFor(() => entriesOf(feed).length === 2, STREAM_WAIT_MS);
      }
      expect(entriesOf(feeds.owner).map((entry) => entry.owner)).toEqual([ownerSub, ownerSub]);
      expect(entriesOf(feeds.admin).map((entry) => entry.owner)).toEqual([ownerSub, ownerSub]);
      expect(entriesOf(feeds.claim).map((entry) => "owner" in entry)).toEqual([false, false]);
      expect(feeds.claim.raw()).not.toContain(ownerSub);
      for (const feed of Object.values(feeds)) feed.close();
    });
  });

  // ---- token expiry ---------------------------------------------------------------------------------------

  it("closes open streams when their token expires; a fresh token resumes by id with nothing lost", async () => {
    const sub = newId("frank");
    const producer = await mint({ sub, scope: "publish subscribe" });
    const single = newId("exp-single");
    const multi = newId("exp-mux");
    await publish(producer, single, [tokenEvent("s0")]);
    await publish(producer, multi, [tokenEvent("m0")]);

    const expiresIn = 3;
    const shortToken = await mint({ sub, scope: "subscribe" }, { expiresIn });
    const expiresAtMs = JSON.parse(Buffer.from(shortToken.split(".")[1]!, "base64url").toString()).exp * 1000;
    const one = track(await openSse(api(`/sessions/${single}/stream`), { headers: bearer(shortToken) }));
    const many = track(
      await openSse(api(`/stream?sessions=${multi}&access_token=${shortToken}`), { headers: {} }),
    );
    expect(one.status).toBe(200);
    expect(many.status).toBe(200);
    await one.waitForEvent("token", STREAM_WAIT_MS);
    await many.waitForEvent(`${multi}:token`, STREAM_WAIT_MS);
    await publish(producer, single, [tokenEvent("s1")]);
    await publish(producer, multi, [tokenEvent("m1")]);
    await one.waitFor((events) => events.length === 2, STREAM_WAIT_MS);
    await many.waitFor((events) => typesOf(events, multi).length === 2, STREAM_WAIT_MS);

    await Promise.all([one.closed, many.closed]);
    const closedAt = Date.now();
    expect(closedAt).toBeGreaterThanOrEqual(expiresAtMs - 1000);
    expect(one.error()).toBeUndefined();

    // Written while the client was away.
    await publish(producer, single, [tokenEvent("s2"), doneEvent(single)]);
    await publish(producer, multi, [tokenEvent("m2"), doneEvent(multi)]);

    const fresh = await mint({ sub, scope: "subscribe" });
    const oneAgain = track(
      await openSse(api(`/sessions/${single}/stream`), {
        headers: bearer(fresh),
        lastEventId: one.lastId()!,
      }),
    );
    const manyAgain = track(
      await openSse(api(`/stream?sessions=${multi}`), {
        headers: bearer(fresh),
        lastEventId: many.lastId()!,
      }),
    );
    await Promise.all([oneAgain.closed, manyAgain.closed]);
    const contents = (events: readonly SseEvent[]) =>
      events.filter((event) => event.event.endsWith("token")).map((event) => JSON.parse(event.data).content);
    expect([...contents(one.events), ...contents(oneAgain.events)]).toEqual(["s0", "s1", "s2"]);
    expect(oneAgain.events.at(-1)?.event).toBe("done");
    expect([...contents(many.events), ...contents(manyAgain.events)]).toEqual(["m0", "m1", "m2"]);
    expect(manyAgain.events.at(-1)?.event).toBe(`${multi}:done`);

    // The expired token itself is refused on reconnect (once past the clock tolerance, 5 s by default).
    const afterTolerance = await mint({ sub, scope: "subscribe" }, { expiresIn: -10 });
    expectError(
      await hit("GET", api(`/sessions/${single}/stream`), { token: afterTolerance }),
      401,
      "token_expired",
    );
  });

  // ---- ids under a prefix claim ---------------------------------------------------------------------------

  it("generates ids inside a `prefix*` claim, so the new session stays readable", async () => {
    const token = await mint({
      sub: newId("gina"),
      scope: "run subscribe",
      sessions: ["team7-*", "exact-one"],
    });
    const created = await hit("POST", api("/sessions"), { token, body: { message: "hi [tokens=2]" } });
    expect(created.status).toBe(201);
    expect(created.body.id).toMatch(/^team7-[A-Za-z0-9_-]+$/);
    expect((created.body.id as string).length).toBeLessThanOrEqual(64);
    expect((await hit("GET", api(`/sessions/${created.body.id}`), { token })).status).toBe(200);

    const res = await fetch(api("/agent/stream"), {
      method: "POST",
      headers: { ...bearer(token), "content-type": "application/json" },
      body: JSON.stringify({ message: "hi [tokens=2]" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-session-id")).toMatch(/^team7-/);
    await res.text();

    const explicit = await hit("POST", api("/sessions"), {
      token,
      body: { message: "hi [tokens=1]", id: "exact-one" },
    });
    expect(explicit.status).toBe(201);
    expectError(
      await hit("POST", api("/sessions"), { token, body: { message: "hi", id: "team8-nope" } }),
      403,
      "forbidden",
    );
  });

  it("refuses to let a token with neither `sub` nor a claim own sessions or subscription sets", async () => {
    const token = await mint({ scope: "run publish subscribe" });
    expectError(await hit("POST", api("/sessions"), { token, body: { message: "hi" } }), 403, "forbidden");
    expectError(
      await hit("POST", api("/sessions"), { token, body: { message: "hi", id: newId("nosub") } }),
      403,
      "forbidden",
    );
    expectError(
      await hit("POST", api(`/sessions/${newId("nosub")}/events`), {
        token,
        body: { events: [{ type: "token", data: { content: "x" } }] },
      }),
      404,
      "not_found",
    );
    expectError(
      await hit("POST", api("/subscriptions"), { token, body: { sessions: ["a"] } }),
      403,
      "forbidden",
    );
  });
});
