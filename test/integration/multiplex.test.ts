/**
 * The multiplexed stream (`GET /api/v1/stream`): framing, cursors and resume, unknown sessions, gaps,
 * the `@sessions` lifecycle feed, limits, subscription sets (across instances on one Redis), fairness
 * between a busy and a quiet session, and token merging for readers far behind.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { encodeCursor } from "../../src/mux/cursor.js";
import {
  closedWithin,
  collectUntilClosed,
  type JsonBody,
  openSse,
  patchJson,
  postJson,
  type SseEvent,
  STORE_KINDS,
  startTestGateway,
  storeOptions,
  type TestGateway,
  type TestGatewayOptions,
} from "../helpers/index.js";

const CURSOR_PATTERN = /^1[A-Za-z0-9_-]*$/;
const CLOSE_TIMEOUT_MS = 15_000;
const NOTE_TYPES = new Set(["unknown", "gap"]);

type StoreKind = (typeof STORE_KINDS)[number];

interface ProducedEvent {
  type: string;
  data: Record<string, unknown>;
}

/** A multiplexed session event, split out of its `<sessionId>:<type>` name. */
interface MuxEvent {
  session: string;
  type: string;
  id: string | undefined;
  data: JsonBody;
  /** Index in the connection's event list. */
  at: number;
}

const newId = (label: string) => `${label}_${randomBytes(6).toString("hex")}`;

function gatewayOptions(kind: StoreKind, env: Record<string, string> = {}): TestGatewayOptions {
  return { ...storeOptions(kind), env };
}

const token = (content: string): ProducedEvent => ({ type: "token", data: { content } });
const start = (): ProducedEvent => ({ type: "start", data: { model: "producer", createdAt: "now" } });
const done = (id: string): ProducedEvent => ({
  type: "done",
  data: { session_id: id, total_tokens: 0, finish_reason: "stop" },
});

async function append(gw: TestGateway, sessionId: string, events: ProducedEvent[]): Promise<string[]> {
  const res = await postJson(`${gw.url}/api/v1/sessions/${sessionId}/events`, { events });
  expect(res.status, res.text).toBe(202);
  return res.body.ids as string[];
}

function muxEvents(events: readonly SseEvent[]): MuxEvent[] {
  const out: MuxEvent[] = [];
  events.forEach((event, at) => {
    const colon = event.event.indexOf(":");
    if (colon < 0) return;
    out.push({
      session: event.event.slice(0, colon),
      type: event.event.slice(colon + 1),
      id: event.id,
      data: JSON.parse(event.data),
      at,
    });
  });
  return out;
}

/** The session's events (not `unknown`/`gap` notes) received on a connection. */
function eventsOf(events: readonly SseEvent[], sessionId: string): MuxEvent[] {
  return muxEvents(events).filter((event) => event.session === sessionId && !NOTE_TYPES.has(event.type));
}

/** Comparable form of an event: type and data. */
const key = (event: { type: string; data: unknown }) => `${event.type} ${JSON.stringify(event.data)}`;

/** Opens a stream expected to fail with `status`, and returns its JSON error body. */
async function expectError(
  url: string,
  status: number,
  headers: Record<string, string> = {},
): Promise<JsonBody> {
  const conn = await openSse(url, { headers });
  if (conn.status !== status) {
    conn.close();
    throw new Error(`expected ${status} from ${url}, got ${conn.status}`);
  }
  await closedWithin(conn, 5_000);
  const body = JSON.parse(conn.raw());
  expect(body.error.code).toEqual(expect.any(String));
  expect(body.error.message).toEqual(expect.any(String));
  return body;
}

const streamUrl = (gw: TestGateway, sessions: string[]) =>
  `${gw.url}/api/v1/stream?sessions=${sessions.join(",")}`;

describe.each(STORE_KINDS)("multiplexed stream over %s", (kind) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(gatewayOptions(kind));
  });
  afterAll(() => gw.close());

  it("frames events as <sid>:<type> with cursor ids, closes once every session ended, then answers 204", async () => {
    const [a, b, c] = [newId("a"), newId("b"), newId("c")];
    await append(gw, a, [start(), token("a0"), token("a1")]);
    await append(gw, b, [start(), token("b0")]);
    await append(gw, c, [start()]);

    const conn = await openSse(streamUrl(gw, [a, b, c]));
    expect(conn.status).toBe(200);
    expect(conn.headers["content-type"]).toMatch(/^text\/event-stream/);
    await conn.waitFor((events) => muxEvents(events).length === 6);
    await append(gw, a, [done(a)]);
    await append(gw, b, [token("b1"), done(b)]);
    expect(conn.isClosed()).toBe(false);
    await append(gw, c, [done(c)]);
    await closedWithin(conn);

    const [first, ...rest] = conn.events;
    expect(first?.event).toBe("connected");
    expect(first?.id).toBeUndefined();
    const connected = JSON.parse(first!.data);
    expect(connected).toEqual({ connectionId: expect.any(String), sessions: [a, b, c] });
    expect(rest.every((event) => [a, b, c].some((id) => event.event.startsWith(`${id}:`)))).toBe(true);

    expect(eventsOf(conn.events, a).map((e) => e.type)).toEqual(["start", "token", "token", "done"]);
    expect(eventsOf(conn.events, b).map((e) => e.type)).toEqual(["start", "token", "token", "done"]);
    expect(eventsOf(conn.events, c).map((e) => e.type)).toEqual(["start", "done"]);
    expect(eventsOf(conn.events, a)[1]!.data).toEqual({ content: "a0" });

    const ids = rest.map((event) => event.id);
    for (const id of ids) expect(id).toMatch(CURSOR_PATTERN);
    expect(new Set(ids).size).toBe(ids.length);

    const cursor = conn.lastId()!;
    const again = await openSse(streamUrl(gw, [a, b, c]), { lastEventId: cursor });
    expect(again.status).toBe(204);
    again.close();
    const viaQuery = await openSse(`${streamUrl(gw, [a, b, c])}&lastEventId=${cursor}`);
    expect(viaQuery.status).toBe(204);
    viaQuery.close();
  });

  it("resumes every session exactly after the cursor, by header or query, never replaying finished sessions", async () => {
    const [a, b, c, d] = [newId("a"), newId("b"), newId("c"), newId("d")];
    const produced = new Map<string, ProducedEvent[]>([
      [a, []],
      [b, []],
      [c, []],
      [d, []],
    ]);
    const produce = async (id: string, events: ProducedEvent[]) => {
      await append(gw, id, events);
      produced.get(id)!.push(...events);
    };
    const tokens = (id: string, from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => token(`${id}#${from + i}`));

    await produce(c, [start(), ...tokens(c, 0, 5), done(c)]);
    await produce(a, [start(), ...tokens(a, 0, 3)]);
    await produce(b, [start(), ...tokens(b, 0, 3)]);
    await produce(d, [start(), ...tokens(d, 0, 2)]);

    const first = await openSse(streamUrl(gw, [a, b, c, d]));
    await first.waitFor(
      (events) =>
        eventsOf(events, c).length === 7 &&
        eventsOf(events, a).length === 4 &&
        eventsOf(events, b).length === 4,
    );
    // Live appends while connected.
    await produce(a, tokens(a, 3, 5));
    await produce(b, tokens(b, 3, 4));
    await produce(d, tokens(d, 2, 3));
    await first.waitFor(
      (events) =>
        eventsOf(events, a).length === 6 &&
        eventsOf(events, b).length === 5 &&
        eventsOf(events, d).length === 4,
    );
    first.close();

    // The client "received" everything up to the cut: the last two events are dropped on the floor.
    const cutAt = first.events.length - 3;
    const seen = first.events.slice(0, cutAt + 1);
    const cursor = seen[cutAt]!.id!;
    expect(cursor).toMatch(CURSOR_PATTERN);
    expect(eventsOf(seen, c).at(-1)?.type).toBe("done");

    // While disconnected: a and d end, b goes on and ends.
    await produce(a, [...tokens(a, 5, 7), done(a)]);
    await produce(d, [done(d)]);
    await produce(b, [...tokens(b, 4, 6), done(b)]);

    const expected = new Map<string, string[]>();
    for (const [id, events] of produced) {
      expected.set(id, events.slice(eventsOf(seen, id).length).map(key));
      expect(eventsOf(seen, id).map(key)).toEqual(events.slice(0, eventsOf(seen, id).length).map(key));
    }
    expect(expected.get(c)).toEqual([]);

    const byHeader = await collectUntilClosed(streamUrl(gw, [a, b, c, d]), {
      lastEventId: cursor,
      timeoutMs: CLOSE_TIMEOUT_MS,
    });
    const byQuery = await collectUntilClosed(`${streamUrl(gw, [a, b, c, d])}&lastEventId=${cursor}`, {
      timeoutMs: CLOSE_TIMEOUT_MS,
    });
    for (const resumed of [byHeader, byQuery]) {
      expect(resumed.status).toBe(200);
      expect(resumed.events[0]?.event).toBe("connected");
      expect(muxEvents(resumed.events).filter((event) => event.session === c)).toEqual([]);
      for (const id of [a, b, c, d]) expect(eventsOf(resumed.events, id).map(key)).toEqual(expected.get(id));
    }
  });

  it("says `unknown` once for a missing session, then streams it when a producer creates it", async () => {
    const [known, missing] = [newId("known"), newId("missing")];
    await append(gw, known, [start()]);
    const conn = await openSse(streamUrl(gw, [known, missing]));
    const unknown = await conn.waitForEvent(`${missing}:unknown`);
    expect(unknown.id).toBeUndefined();
    expect(JSON.parse(unknown.data)).toEqual({});

    await append(gw, missing, [start(), token("hello")]);
    await conn.waitForEvent(`${missing}:token`);
    await append(gw, missing, [done(missing)]);
    await conn.waitForEvent(`${missing}:done`);
    expect(conn.isClosed()).toBe(false);
    await append(gw, known, [done(known)]);
    await closedWithin(conn);

    expect(conn.events.filter((event) => event.event === `${missing}:unknown`)).toHaveLength(1);
    const streamed = eventsOf(conn.events, missing);
    expect(streamed.map((e) => e.type)).toEqual(["start", "token", "done"]);
    for (const event of streamed) expect(event.id).toMatch(CURSOR_PATTERN);
  });

  it("a reader behind what was compacted gets the snapshot, then the kept events: the whole text, no gap", async () => {
    const small = await startTestGateway(gatewayOptions(kind, { MAX_EVENTS_PER_SESSION: "10" }));
    try {
      const g = newId("g");
      const produced: ProducedEvent[] = [start(), token("g#0"), token("g#1")];
      await append(small, g, produced);
      const early = await openSse(streamUrl(small, [g]));
      await early.waitFor((events) => eventsOf(events, g).length === 3);
      early.close();
      const cursor = eventsOf(early.events, g)[1]!.id!; // after g#0

      // Enough to fold the first events (and g#0's position) into the session's snapshot.
      for (let batch = 0; batch < 4; batch++) {
        const events = Array.from({ length: 100 }, (_, i) => token(`g#${2 + batch * 100 + i}`));
        await append(small, g, events);
        produced.push(...events);
      }
      await append(small, g, [done(g)]);
      produced.push(done(g));

      const resumed = await collectUntilClosed(streamUrl(small, [g]), {
        lastEventId: cursor,
        timeoutMs: CLOSE_TIMEOUT_MS,
      });
      const mux = muxEvents(resumed.events);
      expect(mux.filter((event) => event.type === "gap")).toHaveLength(0);
      expect(mux[0]?.type).toBe("snapshot");
      expect(mux[0]?.id).toMatch(CURSOR_PATTERN);
      const snapshot = mux[0]!.data as { content: string; folded: Record<string, number> };
      expect(snapshot.folded.start).toBe(1);
      // The snapshot holds the session's text up to its position; what follows completes it exactly.
      const rest = eventsOf(resumed.events, g).slice(1);
      const contentOf = (events: ReadonlyArray<{ type: string; data: unknown }>) =>
        events
          .filter((event) => event.type === "token")
          .map((event) => (event.data as { content: string }).content)
          .join("");
      expect(snapshot.content + contentOf(rest)).toBe(contentOf(produced));
      expect(rest.at(-1)?.type).toBe("done");
      expect(rest[0]?.type).toBe("token");
    } finally {
      await small.close();
    }
  });

  it("announces created and ended sessions on `@sessions`, which stays open", async () => {
    const feed = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`);
    expect(feed.status).toBe(200);
    await feed.waitForEvent("connected");

    const run = newId("run");
    const created = await postJson(`${gw.url}/api/v1/sessions`, {
      id: run,
      message: "hi [tokens=3]",
      metadata: { team: "blue" },
    });
    expect(created.status).toBe(201);
    const isAbout = (type: string, id: string) => (e: SseEvent) =>
      e.event === `@sessions:${type}` && JSON.parse(e.data).id === id;
    const createdEvent = await feed.waitForEvent(isAbout("created", run));
    expect(JSON.parse(createdEvent.data)).toEqual({
      id: run,
      model: "simulated",
      metadata: { team: "blue" },
      createdAt: expect.any(String),
    });
    expect(Number.isFinite(Date.parse(JSON.parse(createdEvent.data).createdAt))).toBe(true);
    expect(createdEvent.id).toMatch(CURSOR_PATTERN);
    const endedEvent = await feed.waitForEvent(isAbout("ended", run));
    expect(JSON.parse(endedEvent.data)).toEqual({ id: run, status: "done" });

    // A producer's session, ended by a `cancelled` event.
    const produced = newId("prod");
    await append(gw, produced, [start(), { type: "cancelled", data: { reason: "test" } }]);
    await feed.waitForEvent(isAbout("created", produced));
    expect(JSON.parse((await feed.waitForEvent(isAbout("ended", produced))).data)).toEqual({
      id: produced,
      status: "cancelled",
    });

    // With an ordinary session beside it, the connection outlives that session's end.
    const mixed = newId("mixed");
    await append(gw, mixed, [start()]);
    const both = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions,${mixed}`);
    await both.waitForEvent(`${mixed}:start`);
    await append(gw, mixed, [done(mixed)]);
    await both.waitForEvent(`${mixed}:done`);
    const later = newId("later");
    await append(gw, later, [start()]);
    await both.waitForEvent(isAbout("created", later));
    await feed.waitForEvent(isAbout("created", later));
    expect(both.isClosed()).toBe(false);
    expect(feed.isClosed()).toBe(false);
    both.close();
    feed.close();
  });

  it("rejects too many sessions, bad ids, malformed cursors, and a wrong mix of parameters", async () => {
    const many = Array.from({ length: 257 }, (_, i) => `s${i}`);
    const tooMany = await expectError(streamUrl(gw, many), 400);
    expect(tooMany.error.message).toMatch(/subscription/i);
    const atLimit = await openSse(streamUrl(gw, many.slice(0, 256)));
    expect(atLimit.status).toBe(200);
    atLimit.close();

    expect((await expectError(streamUrl(gw, ["ok", "bad!id"]), 400)).error.code).toBe("invalid_session_id");
    expect((await expectError(`${gw.url}/api/v1/stream`, 400)).error.code).toBe("invalid_request");
    expect((await expectError(`${gw.url}/api/v1/stream?sessions=a&subscription=b`, 400)).error.code).toBe(
      "invalid_request",
    );

    // A real cursor to truncate.
    const a = newId("a");
    await append(gw, a, [start(), token("x")]);
    const conn = await openSse(streamUrl(gw, [a, "other"]));
    await conn.waitFor((events) => eventsOf(events, a).length === 2);
    conn.close();
    const real = conn.lastId()!;
    expect(real.length).toBeGreaterThan(4);

    const badCursors = [
      "random text",
      "2abc",
      real.slice(0, Math.ceil(real.length / 2)),
      `${real}!`,
      encodeCursor({ positions: new Map([[5, "1700000000000-0"]]), finished: new Set() }),
      encodeCursor({ positions: new Map(), finished: new Set([9]) }),
    ];
    for (const cursor of badCursors) {
      const byHeader = await expectError(streamUrl(gw, [a, "other"]), 400, { "last-event-id": cursor });
      expect(byHeader.error.code, cursor).toBe("invalid_cursor");
      const byQuery = await expectError(
        `${streamUrl(gw, [a, "other"])}&lastEventId=${encodeURIComponent(cursor)}`,
        400,
      );
      expect(byQuery.error.code, cursor).toBe("invalid_cursor");
    }
  });

  it("lets a quiet session through while a busy one catches up 5,000 events", async () => {
    const [big, quiet] = [newId("big"), newId("quiet")];
    const total = 5_000;
    for (let batch = 0; batch < total / 1000; batch++) {
      await append(
        gw,
        big,
        Array.from({ length: 1000 }, (_, i) => ({ type: "step", data: { n: batch * 1000 + i } })),
      );
    }
    await append(gw, big, [done(big)]);
    await append(gw, quiet, [
      ...Array.from({ length: 5 }, (_, n) => ({ type: "step", data: { n } })),
      done(quiet),
    ]);

    const conn = await collectUntilClosed(streamUrl(gw, [big, quiet]), { timeoutMs: 20_000 });
    const bigEvents = eventsOf(conn.events, big);
    const quietEvents = eventsOf(conn.events, quiet);
    expect(bigEvents.map((e) => e.data.n)).toEqual([
      ...Array.from({ length: total }, (_, n) => n),
      undefined,
    ]);
    expect(quietEvents.map((e) => e.type)).toEqual(["step", "step", "step", "step", "step", "done"]);
    // Round-robin catch-up: the quiet session is through long before the busy one has delivered everything.
    const lastBigStep = bigEvents[total - 1]!.at;
    expect(quietEvents.at(-1)!.at).toBeLessThan(lastBigStep);
  });
});

describe.each(STORE_KINDS)("token merging for a reader far behind, over %s", (kind) => {
  let merging: TestGateway;
  let exact: TestGateway;
  beforeAll(async () => {
    [merging, exact] = await Promise.all([
      startTestGateway(gatewayOptions(kind, { CATCH_UP_BATCH: "100" })),
      startTestGateway(gatewayOptions(kind, { CATCH_UP_BATCH: "100", MERGE_TOKENS_WHEN_BEHIND: "false" })),
    ]);
  });
  afterAll(async () => {
    await Promise.all([merging.close(), exact.close()]);
  });

  const TOKENS = 3_000;

  /** A 3,000-token session; the client holds a cursor taken after its first token. Returns what the resume got. */
  async function resumeFarBehind(gw: TestGateway) {
    const m = newId("m");
    const contents = Array.from({ length: TOKENS }, (_, i) => `w${i} `);
    await append(gw, m, [start(), token(contents[0]!)]);
    const early = await openSse(streamUrl(gw, [m]));
    await early.waitFor((events) => eventsOf(events, m).length === 2);
    early.close();
    const cursor = early.lastId()!;
    for (let from = 1; from < TOKENS; from += 1000) {
      await append(gw, m, contents.slice(from, from + 1000).map(token));
    }
    await append(gw, m, [done(m)]);
    const resumed = await collectUntilClosed(streamUrl(gw, [m]), { lastEventId: cursor, timeoutMs: 20_000 });
    const events = eventsOf(resumed.events, m);
    return {
      tokenFrames: events.filter((e) => e.type === "token"),
      types: events.map((e) => e.type),
      expectedText: contents.slice(1).join(""),
    };
  }

  it("folds runs of tokens into fewer frames with the same text", async () => {
    const { tokenFrames, types, expectedText } = await resumeFarBehind(merging);
    expect(tokenFrames.length).toBeGreaterThan(0);
    expect(tokenFrames.length).toBeLessThan(TOKENS - 1);
    expect(tokenFrames.map((e) => e.data.content).join("")).toBe(expectedText);
    expect(types.at(-1)).toBe("done");
    for (const frame of tokenFrames) expect(frame.id).toMatch(CURSOR_PATTERN);
  });

  it("sends one frame per token with MERGE_TOKENS_WHEN_BEHIND=false", async () => {
    const { tokenFrames, types, expectedText } = await resumeFarBehind(exact);
    expect(tokenFrames).toHaveLength(TOKENS - 1);
    expect(tokenFrames.map((e) => e.data.content).join("")).toBe(expectedText);
    expect(types.at(-1)).toBe("done");
  });
});

/**
 * One subscription scenario: `connectOn` serves the connection, `patchOn` changes the set, `resumeOn`
 * serves the reconnect. Over Redis these are different instances.
 */
async function subscriptionScenario(
  producer: TestGateway,
  connectOn: TestGateway,
  patchOn: TestGateway,
  resumeOn: TestGateway,
): Promise<void> {
  const [s1, s2, s3, s4] = [newId("s1"), newId("s2"), newId("s3"), newId("s4")];
  await append(producer, s1, [start(), token("s1#0")]);
  await append(producer, s2, [start(), token("s2#0")]);
  await append(producer, s3, [start(), token("s3#0"), token("s3#1")]);

  const created = await postJson(`${connectOn.url}/api/v1/subscriptions`, { sessions: [s1, s2] });
  expect(created.status).toBe(201);
  const subscription = created.body.id as string;
  expect(subscription).toMatch(/^[A-Za-z0-9_-]{1,64}$/);

  const conn = await openSse(`${connectOn.url}/api/v1/stream?subscription=${subscription}`);
  expect(conn.status).toBe(200);
  await conn.waitFor((events) => eventsOf(events, s1).length === 2 && eventsOf(events, s2).length === 2);
  const connected = JSON.parse(conn.events[0]!.data);
  expect(conn.events[0]!.event).toBe("connected");
  expect([...connected.sessions].sort()).toEqual([s1, s2].sort());

  const patched = await patchJson(`${patchOn.url}/api/v1/subscriptions/${subscription}`, {
    add: [s3],
    remove: [s1],
  });
  expect(patched.status, patched.text).toBe(200);
  expect([...patched.body.sessions].sort()).toEqual([s2, s3].sort());

  const subscribed = await conn.waitForEvent("subscribed");
  expect(subscribed.id).toBeUndefined();
  expect(JSON.parse(subscribed.data)).toEqual({ add: [s3], remove: [s1] });
  const subscribedAt = conn.events.indexOf(subscribed);
  // The added session streams from its beginning.
  await conn.waitFor((events) => eventsOf(events, s3).length === 3);
  expect(eventsOf(conn.events, s3).map((e) => e.data.content)).toEqual([undefined, "s3#0", "s3#1"]);

  await append(producer, s1, [token("s1#1")]);
  await append(producer, s2, [token("s2#1")]);
  await append(producer, s3, [token("s3#2")]);
  await conn.waitFor((events) => eventsOf(events, s2).length === 3 && eventsOf(events, s3).length === 4);
  expect(muxEvents(conn.events).filter((e) => e.session === s1 && e.at > subscribedAt)).toEqual([]);
  conn.close();
  const cursor = conn.lastId()!;

  // While disconnected.
  await append(producer, s1, [token("s1#2")]);
  await append(producer, s2, [token("s2#2")]);
  await append(producer, s3, [token("s3#3")]);

  const resumed = await openSse(`${resumeOn.url}/api/v1/stream?subscription=${subscription}`, {
    lastEventId: cursor,
  });
  expect(resumed.status).toBe(200);
  await resumed.waitFor((events) => eventsOf(events, s2).length === 1 && eventsOf(events, s3).length === 1);
  await append(producer, s2, [done(s2)]);
  await append(producer, s3, [done(s3)]);
  await resumed.waitFor((events) => eventsOf(events, s2).length === 2 && eventsOf(events, s3).length === 2);
  expect([...JSON.parse(resumed.events[0]!.data).sessions].sort()).toEqual([s2, s3].sort());
  expect(eventsOf(resumed.events, s2).map(key)).toEqual([key(token("s2#2")), key(done(s2))]);
  expect(eventsOf(resumed.events, s3).map(key)).toEqual([key(token("s3#3")), key(done(s3))]);
  expect(muxEvents(resumed.events).filter((e) => e.session === s1)).toEqual([]);

  // A subscription connection stays open when its sessions end, and follows the next change.
  await append(producer, s4, [start()]);
  const added = await patchJson(`${patchOn.url}/api/v1/subscriptions/${subscription}`, { add: [s4] });
  expect(added.status).toBe(200);
  await resumed.waitForEvent(`${s4}:start`);
  expect(resumed.isClosed()).toBe(false);
  resumed.close();
}

describe("subscription sets over memory", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ env: { MAX_SESSIONS_PER_SUBSCRIPTION: "5" } });
  });
  afterAll(() => gw.close());

  it("streams the set and follows PATCH add/remove; a reconnect keeps the changes", async () => {
    await subscriptionScenario(gw, gw, gw, gw);
  });
});

describe("subscription sets over Redis, across instances", () => {
  let a: TestGateway;
  let b: TestGateway;
  beforeAll(async () => {
    const env = { MAX_SESSIONS_PER_SUBSCRIPTION: "5" };
    a = await startTestGateway({ redisUrl: inject("redisUrl"), env });
    b = await startTestGateway({ redisUrl: inject("redisUrl"), prefix: a.prefix, env });
  });
  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  it("a PATCH on one instance reaches a connection on another; the reconnect goes to the other instance", async () => {
    await subscriptionScenario(b, a, b, b);
  });

  it("answers 404 for unknown sets and 400 above MAX_SESSIONS_PER_SUBSCRIPTION", async () => {
    expect((await expectError(`${a.url}/api/v1/stream?subscription=sub_nope`, 404)).error.code).toEqual(
      expect.any(String),
    );
    const patchMissing = await patchJson(`${b.url}/api/v1/subscriptions/sub_nope`, { add: ["x"] });
    expect(patchMissing.status).toBe(404);
    expect(patchMissing.body.error.code).toEqual(expect.any(String));

    const six = Array.from({ length: 6 }, (_, i) => `m${i}`);
    const tooBig = await postJson(`${a.url}/api/v1/subscriptions`, { sessions: six });
    expect(tooBig.status).toBe(400);
    const created = await postJson(`${a.url}/api/v1/subscriptions`, { sessions: six.slice(0, 5) });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const grow = await patchJson(`${b.url}/api/v1/subscriptions/${id}`, { add: ["m5"] });
    expect(grow.status).toBe(400);
    expect(grow.body.error.message).toMatch(/MAX_SESSIONS_PER_SUBSCRIPTION|at most/);
    const swap = await patchJson(`${b.url}/api/v1/subscriptions/${id}`, { add: ["m5"], remove: ["m0"] });
    expect(swap.status).toBe(200);
    expect([...swap.body.sessions].sort()).toEqual(six.slice(1).sort());
  });
});
