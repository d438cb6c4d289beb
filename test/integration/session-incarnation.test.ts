/**
 * Authorisation at delivery: a reader is authorised for a session as it was created (its incarnation),
 * not for the id. When the session expires (IDLE_SESSION_TTL_SECONDS) and another subject creates the
 * same id, a reader still attached, single or multiplexed, receives nothing of the new session: it is
 * told the session is gone (`gap` with `oldest: null`) and detached, whether the new session's first
 * batch reaches it by a notice (a producer's append) or by this instance's own hand-over (a run). An
 * admin reader, whose authorisation holds for the id, follows the id into the new session.
 */
import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  openSse,
  postJson,
  type SseConnection,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const SECRET = "incarnation-test-secret-0123456789-abcdefghijkl";
const WAIT_MS = 15_000;
const newId = (label: string) => `${label}-${randomBytes(5).toString("hex")}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const mint = (sub: string, scope: string) =>
  new SignJWT({ sub, scope })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));

describe("a reader never receives a later session with the same id", () => {
  let gw: TestGateway;
  const opened: SseConnection[] = [];
  let alice: string;
  let bob: string;
  let admin: string;
  beforeAll(async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { AUTH_JWT_SECRET: SECRET, IDLE_SESSION_TTL_SECONDS: "1", SIMULATED_TOKENS_PER_SECOND: "50" },
    });
    alice = await mint(newId("alice"), "run publish subscribe");
    bob = await mint(newId("bob"), "run publish subscribe");
    admin = await mint("ops", "admin");
  });
  afterAll(async () => {
    for (const stream of opened) stream.close();
    await gw?.close();
  });

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const open = async (path: string, token: string) => {
    const stream = await openSse(`${gw.url}/api/v1${path}`, { headers: bearer(token) });
    opened.push(stream);
    expect(stream.status).toBe(200);
    return stream;
  };
  const publish = (token: string, id: string, content: string) =>
    postJson(
      `${gw.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content } }] },
      bearer(token),
    );

  /** Alice's session, read by Alice on one stream and one multiplexed stream, and by admin; then it expires. */
  async function expiredWithReaders(id: string) {
    expect((await publish(alice, id, "alice-1")).status).toBe(202);
    const single = await open(`/sessions/${id}/stream`, alice);
    const mux = await open(`/stream?sessions=${id}`, alice);
    const watcher = await open(`/sessions/${id}/stream`, admin);
    await single.waitForEvent("token", WAIT_MS);
    await mux.waitForEvent(`${id}:token`, WAIT_MS);
    await watcher.waitForEvent("token", WAIT_MS);
    const deadline = Date.now() + WAIT_MS;
    while ((await gw.gateway.context.store.getSession(id)) !== null) {
      if (Date.now() > deadline) throw new Error(`${id} did not expire`);
      await sleep(100);
    }
    return { single, mux, watcher };
  }

  async function expectDetached(id: string, single: SseConnection, mux: SseConnection) {
    const gone = await single.waitForEvent("gap", WAIT_MS);
    expect(JSON.parse(gone.data)).toMatchObject({ oldest: null });
    const muxGone = await mux.waitForEvent(`${id}:gap`, WAIT_MS);
    expect(JSON.parse(muxGone.data)).toMatchObject({ oldest: null });
    await single.closed;
    await mux.closed;
    for (const stream of [single, mux]) {
      expect(stream.raw()).not.toContain("bob-");
      expect(stream.events.filter((event) => event.event.endsWith("token")).length).toBe(1);
    }
  }

  it("when another subject publishes to the id (the new session's notice)", async () => {
    const id = newId("reused");
    const { single, mux, watcher } = await expiredWithReaders(id);
    expect((await publish(bob, id, "bob-secret")).status).toBe(202);
    await expectDetached(id, single, mux);
    // Admin's reading holds for the id: it follows it.
    await watcher.waitFor((events) => events.some((event) => event.data.includes("bob-secret")), WAIT_MS);
  });

  it("when another subject starts a run with the id (this instance's own hand-over of its batches)", async () => {
    const id = newId("rerun");
    const { single, mux, watcher } = await expiredWithReaders(id);
    const run = await postJson(`${gw.url}/api/v1/sessions`, { id, message: "bob- [tokens=5]" }, bearer(bob));
    expect(run.status, run.text).toBe(201);
    await expectDetached(id, single, mux);
    await watcher.waitForEvent("done", WAIT_MS);
  });

  it("a front door's stream (a chat completion resumed by its owner) ends without the new session", async () => {
    const id = newId("door");
    expect((await publish(alice, id, "alice-1")).status).toBe(202);
    const door = await openSse(`${gw.url}/v1/chat/completions/${id}/stream`, { headers: bearer(alice) });
    opened.push(door);
    expect(door.status).toBe(200);
    await door.waitFor((events) => events.some((event) => event.data.includes("alice-1")), WAIT_MS);
    const deadline = Date.now() + WAIT_MS;
    while ((await gw.gateway.context.store.getSession(id)) !== null) {
      if (Date.now() > deadline) throw new Error(`${id} did not expire`);
      await sleep(100);
    }
    expect((await publish(bob, id, "bob-secret")).status).toBe(202);
    await door.closed;
    expect(door.raw()).not.toContain("bob-");
  });
});
