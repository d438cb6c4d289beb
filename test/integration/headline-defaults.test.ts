/**
 * The default limits serve the headline case: one client (one IP in open mode, one subject with a
 * token) starts 100 runs at once and watches them all on ONE multiplexed connection, and does it again
 * within the same minute, without a `429`. An `admin` token is never run-limited, whatever the limits;
 * a `run` token past them still is. Over Redis, where the limits are counted in production.
 */
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  collectUntilClosed,
  type JsonResponse,
  postJson,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const SECRET = "headline-test-secret-0123456789-abcdefghijklmnop";
const RUNS = 100;
const WATCH_MS = 60_000;
/** Runs that last about a second, so the first hundred are still running when the second start. */
const SLOW_RUNS = { SIMULATED_TOKENS_PER_SECOND: "10" };
const MESSAGE = "headline [tokens=10]";

async function mint(sub: string, scope: string): Promise<string> {
  return new SignJWT({ sub, scope })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));
}

const bearer = (token: string | undefined): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {};

/** `count` POST /api/v1/sessions at once; every answer, in order. */
function startRuns(
  gw: TestGateway,
  count: number,
  token?: string,
  message = MESSAGE,
): Promise<JsonResponse[]> {
  return Promise.all(
    Array.from({ length: count }, () => postJson(`${gw.url}/api/v1/sessions`, { message }, bearer(token))),
  );
}

function expectAllCreated(replies: JsonResponse[]): string[] {
  const refused = replies.filter((reply) => reply.status !== 201);
  expect(
    refused.map((reply) => `${reply.status} ${reply.text}`),
    "every run of the burst is accepted",
  ).toEqual([]);
  return replies.map((reply) => reply.body.id as string);
}

/** Watches every session on one `sessions=` connection until the gateway closes it (all ended). */
async function watchToTheEnd(gw: TestGateway, ids: string[], token?: string): Promise<void> {
  const conn = await collectUntilClosed(`${gw.url}/api/v1/stream?sessions=${ids.join(",")}`, {
    headers: bearer(token),
    timeoutMs: WATCH_MS,
  });
  expect(conn.status).toBe(200);
  expect(conn.error()).toBeUndefined();
  const terminals = new Map<string, string[]>();
  for (const event of conn.events) {
    const [sessionId, type] = event.event.split(":") as [string, string];
    if (type === "done" || type === "error" || type === "cancelled") {
      terminals.set(sessionId, [...(terminals.get(sessionId) ?? []), type]);
    }
  }
  expect(ids.filter((id) => terminals.get(id)?.join() !== "done")).toEqual([]);
  expect(conn.events.filter((event) => event.event.endsWith(":token"))).toHaveLength(ids.length * 10);
}

describe("the default limits serve one client's burst of 100 runs, twice in a minute", () => {
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });

  it("in open mode (one IP)", async () => {
    gw = await startTestGateway({ redisUrl: inject("redisUrl"), env: SLOW_RUNS });
    const first = expectAllCreated(await startRuns(gw, RUNS));
    const second = expectAllCreated(await startRuns(gw, RUNS));
    await Promise.all([watchToTheEnd(gw, first), watchToTheEnd(gw, second)]);
  });

  it("with a token (one subject)", async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { ...SLOW_RUNS, AUTH_JWT_SECRET: SECRET },
    });
    const token = await mint("headline-user", "run subscribe");
    const first = expectAllCreated(await startRuns(gw, RUNS, token));
    const second = expectAllCreated(await startRuns(gw, RUNS, token));
    await Promise.all([watchToTheEnd(gw, first, token), watchToTheEnd(gw, second, token)]);
  });
});

describe("an admin token is never run-limited", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { AUTH_JWT_SECRET: SECRET, LIMIT_RUNS_PER_MINUTE: "2", LIMIT_CONCURRENT_RUNS: "1" },
    });
  });
  afterAll(() => gw.close());

  it("starts many runs at once past both limits of its subject, where a `run` token is refused", async () => {
    const runner = await mint("operator", "run");
    const admin = await mint("operator", "admin");
    const long = await postJson(
      `${gw.url}/api/v1/sessions`,
      { message: "hold [tokens=1000000]" },
      bearer(runner),
    );
    expect(long.status).toBe(201);
    const refused = await postJson(
      `${gw.url}/api/v1/sessions`,
      { message: "more [tokens=3]" },
      bearer(runner),
    );
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe("too_many_active_runs");

    // Long enough that they all run at once: far past the concurrency limit of 1 ...
    const ids = expectAllCreated(await startRuns(gw, 20, admin, "admin burst [tokens=1000000]"));
    // ... and, all still running, past the limit of 2 runs a minute.
    expectAllCreated(await startRuns(gw, 5, admin, "admin again [tokens=3]"));

    for (const id of [long.body.id as string, ...ids]) {
      const cancelled = await postJson(`${gw.url}/api/v1/sessions/${id}/cancel`, {}, bearer(admin));
      expect(cancelled.status).toBe(202);
    }
  });
});
