/**
 * Creating a session with the caller's own id is idempotent for the same caller and body: a retry (its
 * answer was lost) is answered 201 as the first was, with `Idempotent-Replayed: true`, on any instance,
 * and starts nothing; another body, or another caller, is 409 session_exists. Two gateways on one
 * Redis, with tokens; and one over memory, open (anonymous callers).
 */

import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { getJson, postJson, startTestGateway, type TestGateway } from "../helpers/index.js";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256!";

async function token(subject: string): Promise<Record<string, string>> {
  const jwt = await new SignJWT({ scope: "run subscribe publish" })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(subject)
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));
  return { authorization: `Bearer ${jwt}` };
}

/** A session's stored history (event types and token contents), straight from Redis. */
async function history(redis: Redis, prefix: string, id: string) {
  const entries = await redis.xrange(`${prefix}s:{${id}}:events`, "-", "+");
  return entries.map(([, fields]) => fields[fields.indexOf("t") + 1]);
}

async function waitEnded(url: string, id: string, headers: Record<string, string>): Promise<void> {
  for (;;) {
    const state = await getJson(`${url}/api/v1/sessions/${id}`, headers);
    if (state.body?.status !== "running") return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("a caller's own session id, created twice (two instances on one Redis)", () => {
  let gateways: [TestGateway, TestGateway];
  let redis: Redis;
  beforeAll(async () => {
    const env = { AUTH_JWT_SECRET: SECRET };
    const first = await startTestGateway({ redisUrl: inject("redisUrl"), env });
    const second = await startTestGateway({ redisUrl: inject("redisUrl"), prefix: first.prefix, env });
    gateways = [first, second];
    redis = new Redis(inject("redisUrl"));
  });
  afterAll(async () => {
    redis?.disconnect();
    for (const gateway of gateways ?? []) await gateway.close();
  });

  it("answers the same caller's retry as the first, on the other instance, and starts nothing", async () => {
    const [first, second] = gateways;
    const alice = await token("alice");
    const id = `retry_${Date.now().toString(36)}`;
    const body = { id, message: "count [tokens=5]", metadata: { b: 2, a: 1 } };
    const created = await postJson(`${first.url}/api/v1/sessions`, body, alice);
    expect(created.status, created.text).toBe(201);
    expect(created.headers.get("idempotent-replayed")).toBeNull();
    // The same request, its fields in another order, sent to the other instance.
    const again = { metadata: { a: 1, b: 2 }, message: "count [tokens=5]", id };
    const retry = await postJson(`${second.url}/api/v1/sessions`, again, alice);
    expect(retry.status, retry.text).toBe(201);
    expect(retry.body).toEqual(created.body);
    expect(retry.headers.get("location")).toBe(created.headers.get("location"));
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    // And once the run has ended: still the first answer, still nothing started.
    await waitEnded(first.url, id, alice);
    const late = await postJson(`${first.url}/api/v1/sessions`, body, alice);
    expect(late.status).toBe(201);
    expect(late.body).toEqual(created.body);
    expect(late.headers.get("idempotent-replayed")).toBe("true");
    const types = await history(redis, first.prefix, id);
    expect(types.filter((type) => type === "token")).toHaveLength(5);
    expect(types.filter((type) => ["done", "error", "cancelled"].includes(type ?? ""))).toEqual(["done"]);
    const feed = await redis.xrange(`${first.prefix}s:{@sessions}:events`, "-", "+");
    const announced = feed.filter(([, fields]) => fields.join(" ").includes(`"id":"${id}"`));
    expect(announced.map(([, fields]) => fields[fields.indexOf("t") + 1])).toEqual(["created", "ended"]);
  });

  it("refuses another body, or another caller, with 409 session_exists", async () => {
    const [first, second] = gateways;
    const alice = await token("alice");
    const id = `other_${Date.now().toString(36)}`;
    const body = { id, message: "hello [tokens=3]" };
    expect((await postJson(`${first.url}/api/v1/sessions`, body, alice)).status).toBe(201);
    for (const [url, request, headers] of [
      [second.url, { ...body, message: "hello again [tokens=3]" }, alice],
      [second.url, { ...body, metadata: { extra: true } }, alice],
      [first.url, body, await token("bob")],
    ] as const) {
      const answer = await postJson(`${url}/api/v1/sessions`, request, headers);
      expect(answer.status, JSON.stringify(request)).toBe(409);
      expect(answer.body.error.code).toBe("session_exists");
      expect(answer.headers.get("idempotent-replayed")).toBeNull();
    }
  });

  it("refuses a creation for an id an outside producer created (no fingerprint)", async () => {
    const [first] = gateways;
    const alice = await token("alice");
    const id = `produced_${Date.now().toString(36)}`;
    const appended = await postJson(
      `${first.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content: "x" } }] },
      alice,
    );
    expect(appended.status, appended.text).toBe(202);
    const answer = await postJson(`${first.url}/api/v1/sessions`, { id, message: "hi" }, alice);
    expect(answer.status).toBe(409);
    expect(answer.body.error.code).toBe("session_exists");
  });
});

describe("a caller's own session id, created twice (memory, open)", () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway();
  });
  afterAll(() => gateway?.close());

  it("answers an anonymous retry as the first; another body is 409", async () => {
    const id = `open_${Date.now().toString(36)}`;
    const body = { id, message: "hi [tokens=2]" };
    const created = await postJson(`${gateway.url}/api/v1/sessions`, body);
    expect(created.status, created.text).toBe(201);
    const retry = await postJson(`${gateway.url}/api/v1/sessions`, body);
    expect(retry.status, retry.text).toBe(201);
    expect(retry.body).toEqual(created.body);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    const other = await postJson(`${gateway.url}/api/v1/sessions`, { id, message: "bye" });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("session_exists");
  });
});

describe("a retry while the run it created is still going (LIMIT_CONCURRENT_RUNS=1)", () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { AUTH_JWT_SECRET: SECRET, LIMIT_CONCURRENT_RUNS: "1", SIMULATED_TOKENS_PER_SECOND: "20" },
    });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it("leaves the running run its place: another run is still refused, and admitted once it ends", async () => {
    const carol = await token("carol");
    const id = `retry_place_${Date.now().toString(36)}`;
    const body = { id, message: "slow [tokens=40]" };
    const created = await postJson(`${gateway.url}/api/v1/sessions`, body, carol);
    expect(created.status, created.text).toBe(201);
    const retry = await postJson(`${gateway.url}/api/v1/sessions`, body, carol);
    expect(retry.status, retry.text).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    // The first run still holds carol's one place.
    const other = await postJson(`${gateway.url}/api/v1/sessions`, { message: "another [tokens=2]" }, carol);
    expect(other.status, other.text).toBe(429);
    expect(other.body?.error?.code).toBe("too_many_active_runs");
    await waitEnded(gateway.url, id, carol);
    const after = await postJson(`${gateway.url}/api/v1/sessions`, { message: "another [tokens=2]" }, carol);
    expect(after.status, after.text).toBe(201);
  });
});
