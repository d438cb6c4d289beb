/**
 * The HTTP API of API.md, endpoint by endpoint, with its 2xx and 4xx answers, over both stores.
 * Real HTTP on loopback against an in-process gateway (memory store or the run's redis-server).
 */
import { randomBytes } from "node:crypto";
import { createParser } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closedWithin,
  getJson,
  type JsonResponse,
  openSse,
  postJson,
  request,
  type SseConnection,
  type SseEvent,
  STORE_KINDS,
  startTestGateway,
  storeOptions,
  type TestGateway,
} from "../helpers/index.js";

const POSITION = /^\d+-\d+$/;
const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;
const TERMINALS = new Set(["done", "error", "cancelled"]);
const WAIT_MS = 10_000;

/** Every session id this file creates: none may ever show up in /metrics. */
const knownIds = new Set<string>();

function newId(label = "api"): string {
  const id = `${label}_${randomBytes(9).toString("base64url")}`;
  knownIds.add(id);
  return id;
}

function comparePositions(a: string, b: string): number {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am !== bm ? am - bm : as - bs;
}

function expectGrowing(ids: readonly (string | undefined)[]): void {
  for (const id of ids) expect(id).toMatch(POSITION);
  for (let i = 1; i < ids.length; i++) expect(comparePositions(ids[i - 1]!, ids[i]!)).toBeLessThan(0);
}

/** Every error is `{error: {code, message}}` as JSON, with the given status. */
function expectError(res: JsonResponse, status: number, code?: string): { code: string; message: string } {
  expect(res.status, res.text).toBe(status);
  expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(Object.keys(res.body.error).sort()).toEqual(["code", "message"]);
  expect(typeof res.body.error.code).toBe("string");
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.error.message.length).toBeGreaterThan(0);
  if (code !== undefined) expect(res.body.error.code).toBe(code);
  return res.body.error;
}

function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = createParser({
    onEvent(message) {
      const event: SseEvent = { event: message.event ?? "message", data: message.data };
      if (message.id !== undefined) event.id = message.id;
      events.push(event);
    },
  });
  parser.feed(text);
  return events;
}

/**
 * The single-session framing, checked on the raw text: every event block has exactly one `id:` that is
 * a position, one `event:`, and one `data:` line holding JSON.
 */
function expectSingleFraming(raw: string): void {
  const blocks = raw.split("\n\n").filter((block) => block.includes("event:"));
  expect(blocks.length).toBeGreaterThan(0);
  for (const block of blocks) {
    // `retry:` and heartbeat comments join the next event's block (a block of their own would be an
    // empty message to fetch-based clients).
    const lines = block
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith(":") && !line.startsWith("retry:"));
    const ids = lines.filter((line) => line.startsWith("id: "));
    const data = lines.filter((line) => line.startsWith("data:"));
    expect(ids, block).toHaveLength(1);
    expect(ids[0]!.slice(4)).toMatch(POSITION);
    expect(
      lines.filter((line) => line.startsWith("event: ")),
      block,
    ).toHaveLength(1);
    expect(data, block).toHaveLength(1);
    expect(() => JSON.parse(data[0]!.replace(/^data: ?/, ""))).not.toThrow();
    expect(lines).toHaveLength(3);
  }
}

async function waitUntil(
  probe: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const types = (events: readonly SseEvent[]) => events.map((event) => event.event);

describe.each(STORE_KINDS)("HTTP API over %s", (kind) => {
  /** Default settings (the test gateway's fast simulated model). */
  let gw: TestGateway;
  /** Tight limits, fast heartbeats and a slow model, for the tests that need them. */
  let tuned: TestGateway;
  const open: SseConnection[] = [];

  const redisUrl = () => storeOptions(kind);

  beforeAll(async () => {
    gw = await startTestGateway(redisUrl());
    tuned = await startTestGateway({
      ...redisUrl(),
      env: {
        MAX_BODY_BYTES: "1000",
        HEARTBEAT_MS: "50",
        SIMULATED_TOKENS_PER_SECOND: "20",
        CANCEL_GRACE_MS: "300",
      },
    });
  });
  afterAll(async () => {
    for (const conn of open) conn.close();
    await gw?.close();
    await tuned?.close();
  });

  async function sse(url: string, opts: Parameters<typeof openSse>[1] = {}): Promise<SseConnection> {
    const conn = await openSse(url, opts);
    open.push(conn);
    return conn;
  }

  /** Starts a run and waits for its whole stream. */
  async function finishedRun(body: Record<string, unknown> = { message: "hello [tokens=5]" }) {
    const res = await postJson(`${gw.url}/api/v1/sessions`, body);
    expect(res.status, res.text).toBe(201);
    const id: string = res.body.id;
    knownIds.add(id);
    const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
    await closedWithin(conn);
    return { id, events: [...conn.events], raw: conn.raw() };
  }

  async function appendEvents(
    base: string,
    id: string,
    events: unknown,
    extra: Record<string, unknown> = {},
  ) {
    return postJson(`${base}/api/v1/sessions/${id}/events`, { events, ...extra });
  }

  // ---- POST /api/v1/agent/stream -----------------------------------------------------------------

  describe("POST /api/v1/agent/stream", () => {
    it("streams start, tokens, usage and done on the response, named by X-Session-Id", async () => {
      const res = await fetch(`${gw.url}/api/v1/agent/stream`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify({ message: "tell me [tokens=6]" }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const id = res.headers.get("x-session-id") ?? "";
      knownIds.add(id);
      expect(id).toMatch(SESSION_ID);
      const raw = await res.text();
      expect(raw.startsWith("retry:")).toBe(true);
      expectSingleFraming(raw);

      const events = parseSse(raw);
      expect(types(events)).toEqual(["start", ...Array(6).fill("token"), "usage", "done"]);
      expectGrowing(events.map((event) => event.id));
      const data = events.map((event) => JSON.parse(event.data));
      expect(data[0]).toMatchObject({ model: expect.any(String), createdAt: expect.any(String) });
      expect(Number.isNaN(Date.parse(data[0].createdAt))).toBe(false);
      for (const token of data.slice(1, 7)) expect(typeof token.content).toBe("string");
      const usage = data[7];
      expect(usage).toMatchObject({ completion_tokens: 6 });
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
      expect(data[8]).toEqual({ session_id: id, total_tokens: usage.total_tokens, finish_reason: "stop" });

      const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
      expect(info.status).toBe(200);
      expect(info.body).toMatchObject({ id, status: "done", lastEventId: events[events.length - 1]!.id });
    });

    it("rejects a body without a message with 400 naming the field", async () => {
      for (const body of [{}, { message: "" }, { message: 42 }, { message: "x", model: "" }]) {
        const res = await postJson(`${gw.url}/api/v1/agent/stream`, body);
        const error = expectError(res, 400);
        expect(error.message).toMatch(/message|model/);
      }
      expect(expectError(await postJson(`${gw.url}/api/v1/agent/stream`, {}), 400).message).toContain(
        "message",
      );
    });

    it("answers another method with 405 and an Allow header", async () => {
      const res = await request("GET", `${gw.url}/api/v1/agent/stream`);
      expectError(res, 405);
      expect(res.headers.get("allow")).toBe("POST");
    });
  });

  // ---- POST /api/v1/sessions ----------------------------------------------------------------------

  describe("POST /api/v1/sessions", () => {
    it("starts a run: 201 {id, status, streamUrl}", async () => {
      const res = await postJson(`${gw.url}/api/v1/sessions`, { message: "hi [tokens=3]" });
      expect(res.status).toBe(201);
      const { id } = res.body;
      knownIds.add(id);
      expect(id).toMatch(SESSION_ID);
      expect(id.length).toBeGreaterThanOrEqual(16);
      expect(res.body).toEqual({ id, status: "running", streamUrl: `/api/v1/sessions/${id}/stream` });
      const conn = await sse(`${gw.url}${res.body.streamUrl}`);
      await closedWithin(conn);
      expect(types(conn.events)).toEqual(["start", "token", "token", "token", "usage", "done"]);
    });

    it("gateway-chosen ids differ from run to run", async () => {
      const a = await postJson(`${gw.url}/api/v1/sessions`, { message: "a [tokens=1]" });
      const b = await postJson(`${gw.url}/api/v1/sessions`, { message: "a [tokens=1]" });
      knownIds.add(a.body.id);
      knownIds.add(b.body.id);
      expect(a.body.id).not.toBe(b.body.id);
    });

    it("takes a caller-chosen id, model and metadata; a repeated id is 409 and no second run", async () => {
      const id = newId("chosen");
      const first = await postJson(`${gw.url}/api/v1/sessions`, {
        id,
        message: "first [tokens=5]",
        metadata: { user: "u-1", tags: ["a", "b"] },
      });
      expect(first.status).toBe(201);
      expect(first.body.id).toBe(id);
      const again = await postJson(`${gw.url}/api/v1/sessions`, { id, message: "second [tokens=2]" });
      expectError(again, 409);

      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
      await closedWithin(conn);
      expect(types(conn.events)).toEqual(["start", ...Array(5).fill("token"), "usage", "done"]);

      const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
      expect(info.body).toMatchObject({ id, status: "done", metadata: { user: "u-1", tags: ["a", "b"] } });
      // Still 409 once the session ended.
      expectError(await postJson(`${gw.url}/api/v1/sessions`, { id, message: "third" }), 409);
    });

    it("accepts the messages[] form", async () => {
      const res = await postJson(`${gw.url}/api/v1/sessions`, {
        messages: [
          { role: "system", content: "be brief" },
          { role: "user", content: "earlier" },
          { role: "assistant", content: "ok" },
          { role: "user", content: "now [tokens=4]" },
        ],
        instructions: "answer in English",
      });
      expect(res.status, res.text).toBe(201);
      knownIds.add(res.body.id);
      const conn = await sse(`${gw.url}${res.body.streamUrl}`);
      await closedWithin(conn);
      expect(types(conn.events).filter((type) => type === "token")).toHaveLength(4);
      expect(conn.events[conn.events.length - 1]!.event).toBe("done");
    });

    it("refuses a field it would not pass on with 400 naming it, never ignoring it", async () => {
      const unknown = await postJson(`${gw.url}/api/v1/sessions`, {
        message: "x [tokens=1]",
        unknownField: { deep: true },
      });
      expect(expectError(unknown, 400).message).toBe("body.unknownField: unknown field");
      const outOfRange = await postJson(`${gw.url}/api/v1/sessions`, { message: "x", temperature: 3 });
      expect(expectError(outOfRange, 400).message).toContain("body.temperature");
    });

    it.each([
      ["no message", {}, "message"],
      ["an empty message", { message: "" }, "message"],
      ["a message that is not a string", { message: 5 }, "message"],
      ["an empty messages list", { messages: [] }, "messages"],
      ["a message with an unknown role", { messages: [{ role: "robot", content: "x" }] }, "messages.0.role"],
      ["a message without content", { messages: [{ role: "user" }] }, "messages.0.content"],
      ["a bad id", { message: "x", id: "a b" }, "id"],
      ["a too long id", { message: "x", id: "a".repeat(65) }, "id"],
      ["metadata that is not an object", { message: "x", metadata: "nope" }, "metadata"],
      ["an empty model", { message: "x", model: "" }, "model"],
    ])("rejects %s with 400 naming the field", async (_what, body, field) => {
      const res = await postJson(`${gw.url}/api/v1/sessions`, body);
      const error = expectError(res, 400);
      expect(error.message).toContain(field);
    });

    it("rejects a JSON body that is not an object with 400", async () => {
      for (const rawBody of ["[]", '"text"', "42", "null"]) {
        const res = await request("POST", `${gw.url}/api/v1/sessions`, { rawBody });
        expectError(res, 400);
      }
    });

    it("a rejected id creates nothing", async () => {
      const res = await postJson(`${gw.url}/api/v1/sessions`, { id: "ok-id", message: "" });
      expectError(res, 400);
      expectError(await getJson(`${gw.url}/api/v1/sessions/ok-id`), 404);
    });
  });

  // ---- GET /api/v1/sessions/:id -------------------------------------------------------------------

  describe("GET /api/v1/sessions/:id", () => {
    it("shows a session's fields", async () => {
      const id = newId();
      const before = Date.now();
      await postJson(`${gw.url}/api/v1/sessions`, { id, message: "x [tokens=2]", metadata: { k: "v" } });
      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
      await closedWithin(conn);
      const res = await getJson(`${gw.url}/api/v1/sessions/${id}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        id,
        status: "done",
        createdAt: expect.any(String),
        model: expect.any(String),
        metadata: { k: "v" },
        lastEventId: conn.lastId(),
      });
      const createdAt = Date.parse(res.body.createdAt);
      expect(createdAt).toBeGreaterThanOrEqual(before - 1000);
      expect(createdAt).toBeLessThanOrEqual(Date.now() + 1000);
    });

    it("is 404 for an unknown id", async () => {
      expectError(await getJson(`${gw.url}/api/v1/sessions/${newId("nobody")}`), 404, "not_found");
    });

    it("is 400 for an id that is not an id", async () => {
      expectError(await getJson(`${gw.url}/api/v1/sessions/a%20b`), 400);
      expectError(await getJson(`${gw.url}/api/v1/sessions/${"a".repeat(65)}`), 400);
      expectError(await getJson(`${gw.url}/api/v1/sessions/a.b`), 400);
      // 64 characters is still an id: unknown, not invalid.
      expectError(await getJson(`${gw.url}/api/v1/sessions/${"a".repeat(64)}`), 404);
    });

    it("answers another method with 405 and an Allow header", async () => {
      const res = await request("PUT", `${gw.url}/api/v1/sessions/${newId()}`, { body: {} });
      expectError(res, 405);
      expect(res.headers.get("allow")).toBe("GET");
    });
  });

  // ---- GET /api/v1/sessions/:id/stream ------------------------------------------------------------

  describe("GET /api/v1/sessions/:id/stream", () => {
    it("sends the stream headers and `retry:` at once, before any event exists", async () => {
      const id = newId("quiet");
      const created = await appendEvents(gw.url, id, [{ type: "note", data: { text: "created" } }]);
      expect(created.status).toBe(202);
      const [noteId] = created.body.ids as string[];
      // Resume after the only event: nothing to send yet.
      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`, { lastEventId: noteId! });
      expect(conn.status).toBe(200);
      expect(conn.headers["content-type"]).toMatch(/^text\/event-stream/);
      expect(conn.headers["cache-control"]).toMatch(/no-cache/);
      expect(conn.headers.connection).toBe("keep-alive");
      expect(conn.headers["x-accel-buffering"]).toBe("no");
      await waitUntil(() => conn.raw().length > 0, "the first bytes");
      expect(conn.raw()).toMatch(/^retry: \d+\n/);
      expect(conn.events).toEqual([]);
      expect(conn.isClosed()).toBe(false);

      // And the stream is live: a new event arrives on it.
      const next = await appendEvents(gw.url, id, [{ type: "note", data: { text: "later" } }]);
      const event = await conn.waitForEvent("note", WAIT_MS);
      expect(event).toEqual({ id: next.body.ids[0], event: "note", data: JSON.stringify({ text: "later" }) });
      conn.close();
    });

    it("without a cursor, streams the whole session and closes after the terminal event", async () => {
      const { events, raw } = await finishedRun({ message: "all of it [tokens=4]" });
      expect(types(events)).toEqual(["start", "token", "token", "token", "token", "usage", "done"]);
      expectGrowing(events.map((event) => event.id));
      expectSingleFraming(raw);
      expect(raw.startsWith("retry:")).toBe(true);
    });

    it("resumes after Last-Event-ID (header) with exactly the remaining events", async () => {
      const { id, events } = await finishedRun({ message: "resume [tokens=6]" });
      for (const cut of [0, 3, events.length - 2]) {
        const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`, { lastEventId: events[cut]!.id! });
        await closedWithin(conn);
        expect(conn.events).toEqual(events.slice(cut + 1));
      }
    });

    it("resumes after ?lastEventId= with exactly the remaining events", async () => {
      const { id, events } = await finishedRun({ message: "resume query [tokens=5]" });
      const cut = 2;
      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream?lastEventId=${events[cut]!.id}`);
      await closedWithin(conn);
      expect(conn.events).toEqual(events.slice(cut + 1));
    });

    it("the header wins over the query parameter", async () => {
      const { id, events } = await finishedRun({ message: "both [tokens=4]" });
      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream?lastEventId=${events[1]!.id}`, {
        lastEventId: events[3]!.id!,
      });
      await closedWithin(conn);
      expect(conn.events).toEqual(events.slice(4));
    });

    it("a resume at (or past) the terminal event is 204 No Content", async () => {
      const { id, events } = await finishedRun({ message: "end [tokens=2]" });
      const terminal = events[events.length - 1]!.id!;
      const res = await request("GET", `${gw.url}/api/v1/sessions/${id}/stream`, {
        headers: { accept: "text/event-stream", "last-event-id": terminal },
      });
      expect(res.status).toBe(204);
      expect(res.text).toBe("");
      const query = await request("GET", `${gw.url}/api/v1/sessions/${id}/stream?lastEventId=${terminal}`);
      expect(query.status).toBe(204);
      const [ms] = terminal.split("-");
      const past = await request("GET", `${gw.url}/api/v1/sessions/${id}/stream`, {
        headers: { "last-event-id": `${Number(ms) + 1000}-0` },
      });
      expect(past.status).toBe(204);
    });

    it("an invalid Last-Event-ID is 400", async () => {
      const { id } = await finishedRun({ message: "bad cursor [tokens=1]" });
      for (const bad of ["abc", "1-", "-1", "1-2-3", "12.5-0"]) {
        const res = await request("GET", `${gw.url}/api/v1/sessions/${id}/stream`, {
          headers: { "last-event-id": bad },
        });
        expectError(res, 400);
      }
      expectError(await request("GET", `${gw.url}/api/v1/sessions/${id}/stream?lastEventId=nope`), 400);
    });

    it("an unknown session is 404, a bad id 400", async () => {
      expectError(await request("GET", `${gw.url}/api/v1/sessions/${newId("nobody")}/stream`), 404);
      expectError(await request("GET", `${gw.url}/api/v1/sessions/a%20b/stream`), 400);
    });

    it("sends `: ping` comments while idle (HEARTBEAT_MS)", async () => {
      const id = newId("idle");
      await appendEvents(tuned.url, id, [{ type: "note", data: {} }]);
      const conn = await sse(`${tuned.url}/api/v1/sessions/${id}/stream`);
      await conn.waitForEvent("note");
      await waitUntil(
        () => conn.comments.filter((comment) => comment.trim() === "ping").length >= 2,
        "two pings",
      );
      expect(conn.raw()).toContain("\n: ping\n");
      conn.close();
    });
  });

  // ---- POST /api/v1/sessions/:id/events -----------------------------------------------------------

  describe("POST /api/v1/sessions/:id/events", () => {
    it("appends a batch in order: 202 {ids}, creating the session if new", async () => {
      const id = newId("producer");
      const batch = [
        { type: "start", data: { model: "outside", createdAt: new Date().toISOString() } },
        { type: "token", data: { content: "Hel" } },
        { type: "token", data: { content: 'lo\n"you" 🚀 \u2028' } },
        { type: "tool.call_1", data: { name: "search", args: { q: "x" } } },
      ];
      const res = await appendEvents(gw.url, id, batch, {
        model: "outside-model",
        metadata: { src: "test" },
      });
      expect(res.status, res.text).toBe(202);
      expect(Object.keys(res.body)).toEqual(["ids"]);
      expect(res.body.ids).toHaveLength(4);
      expectGrowing(res.body.ids);

      const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
      expect(info.body).toMatchObject({
        id,
        status: "running",
        model: "outside-model",
        metadata: { src: "test" },
        lastEventId: res.body.ids[3],
      });

      const more = await appendEvents(gw.url, id, [{ type: "token", data: { content: "!" } }]);
      expect(more.status).toBe(202);
      expect(comparePositions(more.body.ids[0], res.body.ids[3])).toBeGreaterThan(0);

      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
      await conn.waitFor((events) => events.length >= 5);
      expect(conn.events.map((event) => event.id)).toEqual([...res.body.ids, more.body.ids[0]]);
      expect(
        conn.events.slice(0, 4).map((event) => ({ type: event.event, data: JSON.parse(event.data) })),
      ).toEqual(batch);
      // Byte-exact data, one line on the wire.
      expect(conn.events[2]!.data).toBe(JSON.stringify(batch[2]!.data));
      expectSingleFraming(conn.raw());

      const done = await appendEvents(gw.url, id, [
        { type: "done", data: { session_id: id, total_tokens: 3, finish_reason: "stop" } },
      ]);
      expect(done.status).toBe(202);
      await closedWithin(conn);
      expect(conn.events[conn.events.length - 1]!.event).toBe("done");
      expect((await getJson(`${gw.url}/api/v1/sessions/${id}`)).body.status).toBe("done");
    });

    it.each([
      [
        "a bad event type",
        [
          { type: "token", data: {} },
          { type: "Bad Type", data: {} },
        ],
        "events.1.type",
      ],
      ["a type that is too long", [{ type: "a".repeat(33), data: {} }], "events.0.type"],
      ["an empty list", [], "events"],
      ["data that is a string", [{ type: "token", data: "x" }], "events.0.data"],
      ["data that is an array", [{ type: "token", data: [1] }], "events.0.data"],
      ["data that is null", [{ type: "token", data: null }], "events.0.data"],
      ["a missing data", [{ type: "token" }], "events.0.data"],
      [
        "an event after a terminal event",
        [
          { type: "token", data: {} },
          { type: "done", data: {} },
          { type: "token", data: {} },
        ],
        "events.2",
      ],
      ["events that are not a list", { type: "token", data: {} }, "events"],
    ])("rejects a batch with %s: 400, nothing appended", async (_what, events, field) => {
      // On an existing running session: its last position does not move.
      const id = newId("atomic");
      const first = await appendEvents(gw.url, id, [{ type: "note", data: { n: 1 } }]);
      expect(first.status).toBe(202);
      const res = await appendEvents(gw.url, id, events);
      expect(expectError(res, 400).message).toContain(field);
      const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
      expect(info.body).toMatchObject({ status: "running", lastEventId: first.body.ids[0] });
      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
      await conn.waitForEvent("note");
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(conn.events.map((event) => event.id)).toEqual(first.body.ids);
      conn.close();

      // On a new session: it is not even created.
      const fresh = newId("atomic-new");
      expectError(await appendEvents(gw.url, fresh, events), 400);
      expectError(await getJson(`${gw.url}/api/v1/sessions/${fresh}`), 404);
    });

    it("rejects a body without events, and a bad session id, with 400", async () => {
      expect(
        expectError(await postJson(`${gw.url}/api/v1/sessions/${newId()}/events`, {}), 400).message,
      ).toContain("events");
      expectError(await appendEvents(gw.url, "a%20b", [{ type: "note", data: {} }]), 400);
    });

    it("appending to an ended session is 409, and it keeps exactly one terminal event", async () => {
      const { id, events } = await finishedRun({ message: "one end [tokens=3]" });
      const terminal = events[events.length - 1]!;
      expect(terminal.event).toBe("done");

      const again = await appendEvents(gw.url, id, [
        { type: "done", data: { session_id: id, total_tokens: 0, finish_reason: "stop" } },
      ]);
      expectError(again, 409);
      expectError(await appendEvents(gw.url, id, [{ type: "token", data: { content: "late" } }]), 409);
      expectError(
        await appendEvents(gw.url, id, [{ type: "error", data: { code: "x", message: "y" } }]),
        409,
      );

      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
      await closedWithin(conn);
      expect(conn.events).toEqual(events);
      expect(conn.events.filter((event) => TERMINALS.has(event.event))).toHaveLength(1);
      const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
      expect(info.body).toMatchObject({ status: "done", lastEventId: terminal.id });
    });

    it("a producer's terminal batch ends the session for every reader", async () => {
      const id = newId("prod-end");
      await appendEvents(gw.url, id, [
        { type: "start", data: { model: "x", createdAt: new Date().toISOString() } },
      ]);
      const conn = await sse(`${gw.url}/api/v1/sessions/${id}/stream`);
      await conn.waitForEvent("start");
      const res = await appendEvents(gw.url, id, [
        { type: "token", data: { content: "a" } },
        { type: "error", data: { code: "producer_failed", message: "it broke" } },
      ]);
      expect(res.status).toBe(202);
      await closedWithin(conn);
      expect(types(conn.events)).toEqual(["start", "token", "error"]);
      expect((await getJson(`${gw.url}/api/v1/sessions/${id}`)).body.status).toBe("error");
    });
  });

  // ---- POST /api/v1/sessions/:id/cancel -----------------------------------------------------------

  describe("POST /api/v1/sessions/:id/cancel", () => {
    it("cancels a running run: 202, the stream ends with `cancelled` and nothing after", async () => {
      const started = await postJson(`${tuned.url}/api/v1/sessions`, { message: "slow [tokens=400]" });
      expect(started.status).toBe(201);
      const { id } = started.body;
      knownIds.add(id);
      const conn = await sse(`${tuned.url}/api/v1/sessions/${id}/stream`);
      await conn.waitForEvent("token", WAIT_MS);

      const res = await postJson(`${tuned.url}/api/v1/sessions/${id}/cancel`, {});
      expect(res.status, res.text).toBe(202);
      expect(res.body).toEqual({ id, status: "cancelled" });

      await closedWithin(conn);
      const last = conn.events[conn.events.length - 1]!;
      expect(last.event).toBe("cancelled");
      expect(JSON.parse(last.data)).toMatchObject({ reason: expect.any(String) });
      expect(conn.events.filter((event) => TERMINALS.has(event.event))).toHaveLength(1);
      expect(conn.events.filter((event) => event.event === "token").length).toBeLessThan(400);

      const info = await getJson(`${tuned.url}/api/v1/sessions/${id}`);
      expect(info.body).toMatchObject({ status: "cancelled", lastEventId: last.id });
      // Nothing is written after the terminal event, even a little later.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await getJson(`${tuned.url}/api/v1/sessions/${id}`)).body.lastEventId).toBe(last.id);

      // Cancelling again: already ended.
      expectError(await postJson(`${tuned.url}/api/v1/sessions/${id}/cancel`, {}), 409);
    });

    it("cancels a producer-created session (no run)", async () => {
      const id = newId("prod-cancel");
      const note = await appendEvents(tuned.url, id, [{ type: "note", data: { text: "hi" } }]);
      expect(note.status).toBe(202);
      const conn = await sse(`${tuned.url}/api/v1/sessions/${id}/stream`);
      await conn.waitForEvent("note");
      const res = await postJson(`${tuned.url}/api/v1/sessions/${id}/cancel`, {});
      expect(res.status, res.text).toBe(202);
      expect(res.body).toEqual({ id, status: "cancelled" });
      await closedWithin(conn);
      expect(types(conn.events)).toEqual(["note", "cancelled"]);
      expectError(await appendEvents(tuned.url, id, [{ type: "note", data: {} }]), 409);
    });

    it("is 404 for an unknown session and 409 for an ended one", async () => {
      expectError(await postJson(`${gw.url}/api/v1/sessions/${newId("nobody")}/cancel`, {}), 404);
      const { id } = await finishedRun({ message: "over [tokens=1]" });
      const res = await postJson(`${gw.url}/api/v1/sessions/${id}/cancel`, {});
      expectError(res, 409);
      expect((await getJson(`${gw.url}/api/v1/sessions/${id}`)).body.status).toBe("done");
    });

    it("answers GET with 405 and an Allow header", async () => {
      const res = await request("GET", `${gw.url}/api/v1/sessions/${newId()}/cancel`);
      expectError(res, 405);
      expect(res.headers.get("allow")).toBe("POST");
    });
  });

  // ---- errors common to every endpoint ------------------------------------------------------------

  describe("errors", () => {
    it("a body larger than MAX_BODY_BYTES is 413 JSON", async () => {
      const big = "x".repeat(2_000);
      expectError(await postJson(`${tuned.url}/api/v1/sessions`, { message: big }), 413, "payload_too_large");
      const id = newId("big");
      expectError(
        await appendEvents(tuned.url, id, [{ type: "note", data: { big } }]),
        413,
        "payload_too_large",
      );
      expectError(await getJson(`${tuned.url}/api/v1/sessions/${id}`), 404);
      // Just under the limit is fine.
      const small = await appendEvents(tuned.url, id, [{ type: "note", data: { text: "x".repeat(500) } }]);
      expect(small.status).toBe(202);
    });

    it("invalid JSON is 400 JSON", async () => {
      for (const path of ["/api/v1/sessions", `/api/v1/sessions/${newId()}/events`, "/api/v1/agent/stream"]) {
        const res = await request("POST", `${gw.url}${path}`, { rawBody: '{"message": "x",' });
        expectError(res, 400, "invalid_json");
      }
    });

    it("an unknown route is 404 JSON", async () => {
      expectError(await getJson(`${gw.url}/api/v1/nope`), 404, "not_found");
      expectError(await request("POST", `${gw.url}/api/v2/sessions`, { body: { message: "x" } }), 404);
      expectError(await getJson(`${gw.url}/api/v1/sessions/${newId()}/nope`), 404);
    });

    it("a wrong method is 405 JSON with an Allow header", async () => {
      const res = await request("DELETE", `${gw.url}/api/v1/sessions`);
      expectError(res, 405, "method_not_allowed");
      expect(res.headers.get("allow")).toBe("POST");
      const stream = await request("POST", `${gw.url}/api/v1/sessions/${newId()}/stream`, { body: {} });
      expectError(stream, 405);
      expect(stream.headers.get("allow")).toBe("GET");
      const events = await request("GET", `${gw.url}/api/v1/sessions/${newId()}/events`);
      expectError(events, 405);
      expect(events.headers.get("allow")).toBe("POST");
    });
  });

  // ---- health and metrics -------------------------------------------------------------------------

  describe("health and metrics", () => {
    it("/healthz and /readyz are 200", async () => {
      const health = await getJson(`${gw.url}/healthz`);
      expect(health.status).toBe(200);
      const ready = await getJson(`${gw.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ store: kind });
    });

    it("/metrics is Prometheus text with sse_events_appended_total and no session id in any label", async () => {
      // Make sure both run events and producer events were counted.
      await finishedRun({ message: "metrics [tokens=2]" });
      await appendEvents(gw.url, newId("metrics"), [{ type: "note", data: {} }]);

      for (const target of [gw, tuned]) {
        const res = await request("GET", `${target.url}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type") ?? "").toMatch(/^text\/plain/);
        const text = res.text;
        expect(text).toContain("# TYPE sse_events_appended_total counter");
        if (target === gw) {
          expect(text).toMatch(/^sse_events_appended_total\{type="token"\} [1-9]\d*$/m);
          // A type outside the contract ("note") is counted as "other": labels never take callers' values.
          expect(text).toMatch(/^sse_events_appended_total\{type="other"\} [1-9]\d*$/m);
        }
        const labelValues = [...text.matchAll(/="((?:[^"\\]|\\.)*)"/g)].map((match) => match[1]!);
        for (const value of labelValues) expect(knownIds.has(value), `label value ${value}`).toBe(false);
        for (const id of knownIds) expect(text.includes(id), `metrics mention ${id}`).toBe(false);
      }
      expect(knownIds.size).toBeGreaterThan(20);
    });
  });
});
