/**
 * Cost and abuse limits, counted in Redis and so shared by instances: two in-process gateways on one
 * Redis and one key prefix, with small limits. Each limit, once exceeded on either instance, answers
 * `429` with `Retry-After` and a JSON error, and a refused request does nothing. Also: the upstream
 * request carries the `max_completion_tokens` cap, and a stalled upstream ends the run at the timeout.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  collectUntilClosed,
  type JsonResponse,
  openSse,
  postJson,
  randomPrefix,
  request,
  type SseConnection,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const SECRET = "limits-test-secret-0123456789-abcdefghijklmnop";
const LIMITS = {
  LIMIT_RUNS_PER_MINUTE: "3",
  LIMIT_CONCURRENT_RUNS: "2",
  LIMIT_CONNECTIONS_PER_SUBJECT: "2",
  LIMIT_CONNECTIONS_PER_IP: "3",
  LIMIT_PUBLISH_EVENTS_PER_SECOND: "20",
  // The tests play clients at many addresses through one loopback "proxy".
  TRUST_PROXY: "loopback",
};
const WAIT_MS = 10_000;
const LONG_RUN = "run for a long time [tokens=1000000]";

const newId = (label: string) => `${label}-${randomBytes(5).toString("hex")}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A documentation address (TEST-NET-3), distinct per use: these gateways trust X-Forwarded-For from loopback. */
let nextAddress = 1;
const freshIp = () => `203.0.113.${nextAddress++}`;

async function mint(sub: string, scope: string): Promise<string> {
  return new SignJWT({ sub, scope })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));
}

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function expectLimited(
  res: { status: number; headers: Headers | Record<string, unknown> },
  body: unknown,
  code: string,
) {
  expect(res.status, JSON.stringify(body)).toBe(429);
  const retryAfter =
    res.headers instanceof Headers ? res.headers.get("retry-after") : (res.headers["retry-after"] as string);
  expect(retryAfter).toMatch(/^\d+$/);
  expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  expect(body).toEqual({ error: { code, message: expect.any(String) } });
}

describe("limits shared by two instances", () => {
  let a: TestGateway;
  let b: TestGateway;
  const opened: SseConnection[] = [];
  const longRuns: Array<{ gw: TestGateway; id: string; token: string }> = [];

  beforeAll(async () => {
    const prefix = randomPrefix();
    const env = { AUTH_JWT_SECRET: SECRET, ...LIMITS };
    a = await startTestGateway({ redisUrl: inject("redisUrl"), prefix, env });
    b = await startTestGateway({ redisUrl: inject("redisUrl"), prefix, env });
  });
  /** Long runs are cancelled as soon as a test is done with them (they write 1000 tokens a second). */
  async function cancelLongRuns() {
    for (const run of longRuns.splice(0)) {
      await request("POST", `${run.gw.url}/api/v1/sessions/${run.id}/cancel`, {
        headers: { authorization: `Bearer ${run.token}` },
      }).catch(() => {});
    }
    await waitUntil(() => idle(a) && idle(b), "the long runs to end");
  }
  afterAll(async () => {
    for (const connection of opened) connection.close();
    if (a && b) await cancelLongRuns();
    await a?.close();
    await b?.close();
  });

  const auth = (token: string, ip?: string) => ({
    authorization: `Bearer ${token}`,
    ...(ip ? { "x-forwarded-for": ip } : {}),
  });

  const startRun = (gw: TestGateway, token: string, message: string, id?: string): Promise<JsonResponse> =>
    postJson(`${gw.url}/api/v1/sessions`, { message, ...(id ? { id } : {}) }, auth(token));

  async function startLongRun(gw: TestGateway, token: string): Promise<string> {
    const res = await startRun(gw, token, LONG_RUN);
    expect(res.status, res.text).toBe(201);
    longRuns.push({ gw, id: res.body.id, token });
    return res.body.id as string;
  }

  const idle = (gw: TestGateway) => gw.gateway.context.runs.activeRuns === 0;

  it("runs per minute: 2 on A + 1 on B, then the next on either is 429", async () => {
    // The window is a fixed minute: if it turns during the sequence, the sequence is repeated.
    for (let attempt = 1; ; attempt++) {
      const token = await mint(newId("rate"), "run subscribe");
      const windowBefore = Math.floor(Date.now() / 60_000);
      for (const gw of [a, a, b]) {
        const res = await startRun(gw, token, "short [tokens=1]");
        expect(res.status, res.text).toBe(201);
        // Wait for the run to end (and give back its concurrency place): only the rate counts here.
        await waitUntil(() => idle(gw), "the run to end");
      }
      const refusedId = newId("refused");
      const onA = await startRun(a, token, "short [tokens=1]", refusedId);
      const onB = await startRun(b, token, "short [tokens=1]");
      const agent = await request("POST", `${b.url}/api/v1/agent/stream`, {
        body: { message: "short [tokens=1]" },
        headers: auth(token),
      });
      if (Math.floor(Date.now() / 60_000) !== windowBefore && attempt < 3) continue;
      expectLimited(onA, onA.body, "too_many_runs");
      expectLimited(onB, onB.body, "too_many_runs");
      expectLimited(agent, agent.body, "too_many_runs");
      expect(Number(onA.headers.get("retry-after"))).toBeLessThanOrEqual(60);
      // The refused run created nothing.
      expect(await a.gateway.context.store.getSession(refusedId)).toBeNull();
      // Another subject is not affected.
      const other = await startRun(b, await mint(newId("rate-other"), "run"), "short [tokens=1]");
      expect(other.status).toBe(201);
      await waitUntil(() => idle(a) && idle(b), "runs to end");
      return;
    }
  });

  it("concurrent runs: two running anywhere, the third on either instance is 429", async () => {
    const first = await mint(newId("conc"), "run subscribe");
    await startLongRun(a, first);
    await startLongRun(a, first);
    const refusedId = newId("refused");
    const onB = await startRun(b, first, "short [tokens=1]", refusedId);
    expectLimited(onB, onB.body, "too_many_active_runs");
    expect(await b.gateway.context.store.getSession(refusedId)).toBeNull();

    const second = await mint(newId("conc"), "run subscribe");
    await startLongRun(b, second);
    await startLongRun(a, second);
    const onA = await startRun(a, second, "short [tokens=1]");
    expectLimited(onA, onA.body, "too_many_active_runs");
    await cancelLongRuns();
  });

  it("concurrent runs: a cancelled run gives its place back, on any instance", async () => {
    const token = await mint(newId("conc-release"), "run subscribe");
    const onA = await startLongRun(a, token);
    await startLongRun(b, token);
    const cancelled = await request("POST", `${b.url}/api/v1/sessions/${onA}/cancel`, {
      headers: auth(token),
    });
    expect(cancelled.status).toBe(202);
    await waitUntil(() => idle(a), "the cancelled run to end on A");
    const third = await startRun(b, token, "short [tokens=1]");
    expect(third.status, third.text).toBe(201);
    await cancelLongRuns();
  });

  async function producerSession(token: string): Promise<string> {
    const id = newId("conn");
    const res = await postJson(
      `${a.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content: "x" } }] },
      auth(token),
    );
    expect(res.status, res.text).toBe(202);
    return id;
  }

  async function open(gw: TestGateway, path: string, headers: Record<string, string>) {
    const connection = await openSse(`${gw.url}${path}`, { headers });
    opened.push(connection);
    if (connection.status !== 200) await connection.closed;
    return connection;
  }

  const bodyOf = (connection: SseConnection) => JSON.parse(connection.raw());

  it("connections per subject: two open streams anywhere, the third on either instance is 429", async () => {
    const token = await mint(newId("conn-sub"), "run publish subscribe");
    const session = await producerSession(token);
    const path = `/api/v1/sessions/${session}/stream`;
    const first = await open(a, path, auth(token, freshIp()));
    const second = await open(b, `/api/v1/stream?sessions=${session}`, auth(token, freshIp()));
    expect([first.status, second.status]).toEqual([200, 200]);

    for (const gw of [a, b]) {
      const refused = await open(gw, path, auth(token, freshIp()));
      expectLimited(refused, bodyOf(refused), "too_many_connections");
      const mux = await open(gw, `/api/v1/stream?sessions=${session}`, auth(token, freshIp()));
      expectLimited(mux, bodyOf(mux), "too_many_connections");
    }
    // A stream started by a run counts too; the refused one starts no run.
    const before = (await a.gateway.context.store.read("@sessions", null, 10_000)).events.length;
    expect(before).toBeGreaterThan(0);
    const agent = await request("POST", `${a.url}/api/v1/agent/stream`, {
      body: { message: "short [tokens=1]" },
      headers: auth(token, freshIp()),
    });
    expectLimited(agent, agent.body, "too_many_connections");
    expect((await a.gateway.context.store.read("@sessions", null, 10_000)).events.length).toBe(before);

    // Closing one stream frees its place.
    first.close();
    let third: SseConnection | undefined;
    await waitUntil(async () => {
      const attempt = await open(b, path, auth(token, freshIp()));
      if (attempt.status === 200) third = attempt;
      return attempt.status === 200;
    }, "a place to free up");
    expect(third?.status).toBe(200);
    second.close();
    third?.close();
  });

  it("connections per IP: three open streams from one address, whoever the subjects, then 429", async () => {
    const ip = freshIp();
    const one = await mint(newId("conn-ip"), "publish subscribe");
    const two = await mint(newId("conn-ip"), "publish subscribe");
    const three = await mint(newId("conn-ip"), "publish subscribe");
    const session1 = await producerSession(one);
    const session2 = await producerSession(two);
    const session3 = await producerSession(three);
    const streams = [
      await open(a, `/api/v1/sessions/${session1}/stream`, auth(one, ip)),
      await open(b, `/api/v1/sessions/${session1}/stream`, auth(one, ip)),
      await open(b, `/api/v1/stream?sessions=${session2}`, auth(two, ip)),
    ];
    expect(streams.map((stream) => stream.status)).toEqual([200, 200, 200]);

    const refusedA = await open(a, `/api/v1/sessions/${session2}/stream`, auth(two, ip));
    expectLimited(refusedA, bodyOf(refusedA), "too_many_connections");
    const refusedB = await open(b, `/api/v1/stream?sessions=${session3}`, auth(three, ip));
    expectLimited(refusedB, bodyOf(refusedB), "too_many_connections");
    // From another address the same subjects still may.
    const elsewhere = await open(a, `/api/v1/sessions/${session3}/stream`, auth(three, freshIp()));
    expect(elsewhere.status).toBe(200);
    for (const stream of [...streams, elsewhere]) stream.close();
  });

  it("publish rate per session: 20 events per second across instances, then 429; refused events are not kept", async () => {
    const token = await mint(newId("pub"), "publish subscribe");
    const tokens = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ type: "token", data: { content: `t${i}` } }));

    // One batch over the limit is refused whatever the window.
    const tooBig = newId("pub-big");
    const big = await postJson(
      `${a.url}/api/v1/sessions/${tooBig}/events`,
      { events: tokens(21) },
      auth(token),
    );
    expectLimited(big, big.body, "too_many_events");
    expect(await a.gateway.context.store.getSession(tooBig)).toBeNull();

    // The window is one second: if it turns between the two requests, try again with a new session.
    for (let attempt = 1; ; attempt++) {
      const session = newId("pub");
      const second = Math.floor(Date.now() / 1000);
      const first = await postJson(
        `${a.url}/api/v1/sessions/${session}/events`,
        { events: tokens(20) },
        auth(token),
      );
      const over = await postJson(
        `${b.url}/api/v1/sessions/${session}/events`,
        { events: tokens(1) },
        auth(token),
      );
      if (Math.floor(Date.now() / 1000) !== second && attempt < 10) continue;
      expect(first.status, first.text).toBe(202);
      expectLimited(over, over.body, "too_many_events");
      const stored = await b.gateway.context.store.read(session, null, 100);
      expect(stored.events).toHaveLength(20);
      // Another session has its own budget.
      const other = await postJson(
        `${b.url}/api/v1/sessions/${newId("pub")}/events`,
        { events: tokens(5) },
        auth(token),
      );
      expect(other.status).toBe(202);
      // The next window accepts again.
      await waitUntil(() => Math.floor(Date.now() / 1000) !== second, "the next second");
      const later = await postJson(
        `${b.url}/api/v1/sessions/${session}/events`,
        { events: tokens(1) },
        auth(token),
      );
      expect(later.status, later.text).toBe(202);
      return;
    }
  });
});

describe("session creation per subject, and a lifecycle feed one tenant cannot flush", () => {
  let gw: TestGateway;
  const opened: SseConnection[] = [];
  beforeAll(async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { AUTH_JWT_SECRET: SECRET, LIMIT_NEW_SESSIONS_PER_MINUTE: "3", LIFECYCLE_MAX_EVENTS: "10" },
    });
  });
  afterAll(async () => {
    for (const connection of opened) connection.close();
    await gw?.close();
  });
  const publish = (token: string, id: string) =>
    postJson(
      `${gw.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content: "x" } }] },
      { authorization: `Bearer ${token}` },
    );

  it("LIMIT_NEW_SESSIONS_PER_MINUTE: a subject's appends create at most that many sessions a minute, then 429", async () => {
    // The window is a fixed minute: if it turns during the sequence, the sequence is repeated.
    for (;;) {
      const minute = Math.floor(Date.now() / 60_000);
      const token = await mint(newId("creator"), "publish subscribe");
      const ids = Array.from({ length: 4 }, () => newId("new"));
      const replies = [];
      for (const id of ids) replies.push(await publish(token, id));
      if (Math.floor(Date.now() / 60_000) !== minute) continue;
      expect(replies.slice(0, 3).map((reply) => reply.status)).toEqual([202, 202, 202]);
      expectLimited(replies[3]!, replies[3]!.body, "too_many_new_sessions");
      expect(await gw.gateway.context.store.getSession(ids[3]!)).toBeNull();
      // Appending to its sessions goes on; another subject has its own budget; admin has none.
      expect((await publish(token, ids[0]!)).status).toBe(202);
      expect((await publish(await mint(newId("other"), "publish"), newId("new"))).status).toBe(202);
      const admin = await mint(newId("operator"), "admin");
      for (let i = 0; i < 5; i++) expect((await publish(admin, newId("ops"))).status).toBe(202);
      return;
    }
  });

  it("a tenant's own @sessions entries stay, however many sessions another tenant creates", async () => {
    const aliceSub = newId("alice");
    const alice = await mint(aliceSub, "publish subscribe");
    const mine = newId("alice-session");
    expect((await publish(alice, mine)).status).toBe(202);
    // Another tenant (many subjects, each within its creation limit) creates far more than the feed keeps.
    for (let s = 0; s < 8; s++) {
      const flooder = await mint(newId("flood"), "publish");
      for (let i = 0; i < 3; i++) expect((await publish(flooder, newId("flood"))).status).toBe(202);
    }
    const feed = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    opened.push(feed);
    expect(feed.status).toBe(200);
    const created = await feed.waitForEvent("@sessions:created", WAIT_MS);
    expect(JSON.parse(created.data)).toMatchObject({ id: mine, owner: aliceSub });
    expect(feed.events.filter((event) => event.event === "@sessions:gap")).toEqual([]);
    feed.close();
  });
});

describe("which address per-IP limits count (header trust)", () => {
  const opened: SseConnection[] = [];
  const gateways: TestGateway[] = [];
  afterAll(async () => {
    for (const connection of opened) connection.close();
    for (const gw of gateways) await gw.close();
  });
  /** Open mode, where per-IP limits are the only limits: two streams per address, two runs a minute. */
  async function gatewayWith(env: Record<string, string>): Promise<TestGateway> {
    const gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { LIMIT_CONNECTIONS_PER_IP: "2", LIMIT_RUNS_PER_MINUTE: "2", ...env },
    });
    gateways.push(gw);
    return gw;
  }
  const feed = async (gw: TestGateway, forwardedFor: string) => {
    const connection = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`, {
      headers: { "x-forwarded-for": forwardedFor },
    });
    opened.push(connection);
    if (connection.status !== 200) await connection.closed;
    return connection;
  };
  /** Every key of the gateway's prefix, as Redis lists them. */
  const keysOf = (gw: TestGateway) => {
    const redis = new Redis(inject("redisUrl"));
    return redis.keys(`${gw.prefix}*`).finally(() => redis.disconnect());
  };

  it("by default believes no X-Forwarded-For: a client cannot pass its per-IP limits by sending one", async () => {
    const gw = await gatewayWith({});
    const streams = [await feed(gw, "198.51.100.1"), await feed(gw, "198.51.100.2")];
    expect(streams.map((stream) => stream.status)).toEqual([200, 200]);
    const third = await feed(gw, "198.51.100.3");
    expectLimited(third, JSON.parse(third.raw()), "too_many_connections");
    // The JSON API (Express's req.ip) counts the same address.
    const runs = [];
    for (const ip of ["198.51.100.4", "198.51.100.5", "198.51.100.6"]) {
      runs.push(
        await postJson(`${gw.url}/api/v1/sessions`, { message: "hi [tokens=1]" }, { "x-forwarded-for": ip }),
      );
    }
    expect(runs.map((run) => run.status)).toEqual([201, 201, 429]);
    expect((await keysOf(gw)).filter((key) => key.includes("198.51.100."))).toEqual([]);
  });

  it("from a trusted proxy, a forwarded value that is not an IP address counts as the proxy's address and never reaches a key", async () => {
    const gw = await gatewayWith({ TRUST_PROXY: "loopback" });
    const garbage = ["evil}{", "not an address", "1.2.3.4.5", "::g", "x:limit:{a}"];
    const streams = [await feed(gw, garbage[0]!), await feed(gw, garbage[1]!)];
    expect(streams.map((stream) => stream.status)).toEqual([200, 200]);
    for (const text of garbage.slice(2)) {
      const refused = await feed(gw, text);
      expectLimited(refused, JSON.parse(refused.raw()), "too_many_connections");
    }
    const runs = [];
    for (const text of garbage.slice(0, 3)) {
      runs.push(
        await postJson(
          `${gw.url}/api/v1/sessions`,
          { message: "hi [tokens=1]" },
          { "x-forwarded-for": text },
        ),
      );
    }
    expect(runs.map((run) => run.status)).toEqual([201, 201, 429]);
    const keys = await keysOf(gw);
    expect(keys.some((key) => key.includes("127.0.0.1"))).toBe(true);
    for (const text of garbage) expect(keys.filter((key) => key.includes(text))).toEqual([]);
    // A real address from the trusted proxy is believed.
    const forwarded = await feed(gw, "192.0.2.77");
    expect(forwarded.status).toBe(200);
  });
});

describe("upstream caps", () => {
  let fixture: OpenAIFixture;
  let gw: TestGateway;
  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: {
        OPENAI_API_KEY: "sk-test-limits",
        OPENAI_BASE_URL: fixture.url,
        MAX_OUTPUT_TOKENS: "77",
        UPSTREAM_TIMEOUT_MS: "500",
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await fixture?.close();
  });

  it("sends max_completion_tokens from MAX_OUTPUT_TOKENS to the upstream", async () => {
    fixture.script({ tokens: ["a", "b", "c"] });
    const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "hello" });
    expect(created.status).toBe(201);
    const stream = await collectUntilClosed(`${gw.url}${created.body.streamUrl}`, { timeoutMs: WAIT_MS });
    expect(stream.events.at(-1)?.event).toBe("done");
    const sent = fixture.requests.at(-1)?.body as Record<string, unknown>;
    expect(sent.max_completion_tokens).toBe(77);
    expect(sent.stream).toBe(true);
  });

  it("ends a run whose upstream stalls with error upstream_timeout (UPSTREAM_TIMEOUT_MS)", async () => {
    fixture.script({ tokens: ["a", "b", "c"], hangAfter: 1 });
    const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "hello" });
    expect(created.status).toBe(201);
    const stream = await collectUntilClosed(`${gw.url}${created.body.streamUrl}`, { timeoutMs: WAIT_MS });
    const last = stream.events.at(-1);
    expect(last?.event).toBe("error");
    expect(JSON.parse(last!.data).code).toBe("upstream_timeout");
  });
});
