/**
 * Several real gateway processes on one Redis and one key prefix: a run started on one instance is read
 * and cancelled on another, clients resume on any instance without loss or duplicates, and a browser-style
 * EventSource survives the restart (crash and drain) of the instance it reads from.
 */
import { EventSource } from "eventsource";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { mulberry32 } from "../../src/agent/simulated-provider.js";
import {
  collectUntilClosed,
  type GatewayProcess,
  getJson,
  openSse,
  postJson,
  randomPrefix,
  type SseConnection,
  type SseEvent,
  startGatewayProcess,
} from "../helpers/index.js";

const TERMINAL = new Set(["done", "error", "cancelled"]);
const CURSOR_PATTERN = /^1[A-Za-z0-9_-]*$/;
const STREAM_TIMEOUT_MS = 20_000;
const POLL_MS = 20;

/** An event as compared across reads: type and data, in order. */
interface Received {
  type: string;
  data: string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitUntil(
  condition: () => boolean,
  what: () => string,
  timeoutMs = STREAM_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(POLL_MS);
  }
}

async function startRun(gw: GatewayProcess, message: string): Promise<string> {
  const res = await postJson(`${gw.url}/api/v1/sessions`, { message });
  expect(res.status, res.text).toBe(201);
  return res.body.id as string;
}

const sessionStream = (gw: GatewayProcess, id: string) => `${gw.url}/api/v1/sessions/${id}/stream`;
const muxStream = (gw: GatewayProcess, ids: readonly string[]) =>
  `${gw.url}/api/v1/stream?sessions=${ids.join(",")}`;

/** The whole session, read from its beginning on `gw` (after it ended). */
async function fullRead(gw: GatewayProcess, id: string): Promise<Received[]> {
  const conn = await collectUntilClosed(sessionStream(gw, id), { timeoutMs: STREAM_TIMEOUT_MS });
  expect(conn.status).toBe(200);
  const events = conn.events.map((event) => ({ type: event.event, data: event.data }));
  expect(TERMINAL.has(events.at(-1)?.type ?? "")).toBe(true);
  return events;
}

/** Splits `<sessionId>:<type>` events; connection-level events are skipped. */
function sessionEvents(events: readonly SseEvent[]): Array<{ session: string } & Received> {
  const out: Array<{ session: string } & Received> = [];
  for (const event of events) {
    const colon = event.event.indexOf(":");
    if (colon < 0) continue;
    out.push({ session: event.event.slice(0, colon), type: event.event.slice(colon + 1), data: event.data });
  }
  return out;
}

/** The events up to and including the n-th session event (all of them when there are fewer). */
function firstSessionEvents(events: readonly SseEvent[], n: number): SseEvent[] {
  let seen = 0;
  for (let i = 0; i < events.length; i++) {
    if (events[i]!.event.includes(":") && ++seen === n) return events.slice(0, i + 1);
  }
  return [...events];
}

const tokenCount = (events: readonly SseEvent[]) => events.filter((event) => event.event === "token").length;

describe("several gateway processes on one Redis", () => {
  let a: GatewayProcess;
  let b: GatewayProcess;
  let c: GatewayProcess;
  let env: Record<string, string>;

  beforeAll(async () => {
    env = {
      REDIS_URL: inject("redisUrl"),
      REDIS_KEY_PREFIX: randomPrefix(),
      SIMULATED_TOKENS_PER_SECOND: "100",
      LOG_LEVEL: "warn",
      RETRY_MS: "100",
      DRAIN_MS: "200",
    };
    [a, b, c] = await Promise.all([
      startGatewayProcess(env),
      startGatewayProcess(env),
      startGatewayProcess(env),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
  });

  it("reads on B a run started on A, and a cancel posted to B stops a run on A", async () => {
    const id = await startRun(a, "read me elsewhere [tokens=200]");
    const onB = await collectUntilClosed(sessionStream(b, id), { timeoutMs: STREAM_TIMEOUT_MS });
    expect(onB.events.map((event) => event.event)).toEqual([
      "start",
      ...Array(200).fill("token"),
      "usage",
      "done",
    ]);
    const onA = await collectUntilClosed(sessionStream(a, id), { timeoutMs: STREAM_TIMEOUT_MS });
    expect(onA.events).toEqual(onB.events);

    const long = await startRun(a, "a long one [tokens=5000]");
    const stream = await openSse(sessionStream(a, long));
    await stream.waitFor((events) => tokenCount(events) >= 5);
    const cancel = await postJson(`${b.url}/api/v1/sessions/${long}/cancel`, {});
    expect(cancel.status, cancel.text).toBe(202);
    expect(cancel.body).toEqual({ id: long, status: "cancelled" });
    await collectClosed(stream);
    const types = stream.events.map((event) => event.event);
    expect(types.at(-1)).toBe("cancelled");
    expect(types.filter((type) => TERMINAL.has(type))).toEqual(["cancelled"]);
    expect(tokenCount(stream.events)).toBeLessThan(5000);
    const status = await getJson(`${b.url}/api/v1/sessions/${long}`);
    expect(status.body.status).toBe("cancelled");
    const after = await openSse(sessionStream(b, long), { lastEventId: stream.lastId()! });
    expect(after.status).toBe(204);
    after.close();
  });

  it("resumes a single-session stream on another instance exactly after Last-Event-ID, while the run goes on", async () => {
    const id = await startRun(a, "resume me [tokens=300]");
    const received: SseEvent[] = [];
    let cursor: string | undefined;
    let server = 0;
    const instances = [a, b];
    const random = mulberry32(7);
    // Drop after k events a few times, each resume on the other instance; the last read runs to the end.
    for (let drops = 0; ; drops++) {
      const gw = instances[server++ % 2]!;
      const conn = await openSse(sessionStream(gw, id), cursor === undefined ? {} : { lastEventId: cursor });
      if (conn.status === 204) {
        conn.close();
        break;
      }
      expect(conn.status).toBe(200);
      if (drops < 4) {
        const k = 20 + Math.floor(random() * 60);
        await conn.waitFor((events) => events.length >= k);
        conn.close();
        // The client "received" exactly k events; whatever else was in flight is lost with the socket.
        received.push(...conn.events.slice(0, k));
        cursor = conn.events[k - 1]!.id;
        if (drops === 0) {
          const status = await getJson(`${a.url}/api/v1/sessions/${id}`);
          expect(status.body.status).toBe("running");
        }
      } else {
        await collectClosed(conn);
        received.push(...conn.events);
        break;
      }
    }
    // 303 events: below CATCH_UP_BATCH (500), so this late full read is not token-merged.
    const full = await collectUntilClosed(sessionStream(b, id), { timeoutMs: STREAM_TIMEOUT_MS });
    expect(received.map((event) => event.id)).toEqual(full.events.map((event) => event.id));
    expect(received).toEqual(full.events);
    expect(received.at(-1)?.event).toBe("done");
  });

  it("keeps 8 multiplexed sessions exact over 10 random disconnects, reconnecting alternately to A and B", async () => {
    const seed = Date.now() % 100_000;
    const random = mulberry32(seed);
    const ids = await Promise.all(
      Array.from({ length: 8 }, (_, i) => startRun(i % 2 === 0 ? a : b, `session ${i} of 8 [tokens=400]`)),
    );
    const received = new Map<string, Received[]>(ids.map((id) => [id, []]));
    const finished = new Set<string>();
    let cursor: string | undefined;
    let disconnects = 0;
    let segment = 0;
    let endedByServer = false;
    while (!endedByServer) {
      const gw = segment++ % 2 === 0 ? a : b;
      const conn = await openSse(muxStream(gw, ids), cursor === undefined ? {} : { lastEventId: cursor });
      if (conn.status === 204) {
        conn.close();
        break;
      }
      expect(conn.status, `seed ${seed}`).toBe(200);
      let kept: readonly SseEvent[];
      if (disconnects < 10) {
        const target = 20 + Math.floor(random() * 100);
        try {
          await conn.waitFor((events) => sessionEvents(events).length >= target, STREAM_TIMEOUT_MS);
        } catch (error) {
          if (!conn.isClosed()) throw error;
        }
        endedByServer = conn.isClosed();
        conn.close();
        // The client keeps exactly `target` session events: whatever else was in flight is lost with the socket.
        kept = endedByServer ? conn.events : firstSessionEvents(conn.events, target);
        if (!endedByServer) disconnects++;
      } else {
        await collectClosed(conn);
        endedByServer = true;
        kept = conn.events;
      }
      for (const event of sessionEvents(kept)) {
        // A session whose end was received (on this or an earlier connection) is never replayed.
        expect(finished.has(event.session), `seed ${seed}: ${event.session} after its terminal`).toBe(false);
        received.get(event.session)!.push({ type: event.type, data: event.data });
        if (TERMINAL.has(event.type)) finished.add(event.session);
      }
      cursor = kept.findLast((event) => event.id !== undefined)?.id ?? cursor;
      if (cursor !== undefined) expect(cursor).toMatch(CURSOR_PATTERN);
    }
    expect(disconnects, `seed ${seed}`).toBe(10);
    expect(finished.size).toBe(8);
    const again = await openSse(muxStream(b, ids), { lastEventId: cursor! });
    expect(again.status).toBe(204);
    again.close();

    const full = await Promise.all(ids.map((id) => fullRead(a, id)));
    ids.forEach((id, i) => {
      expect(received.get(id), `seed ${seed}, session ${i}`).toEqual(full[i]);
    });
  });

  it("an EventSource on C resumes by itself across a crash and a drain of C, with no loss and no duplicate", async () => {
    const run = await startRun(a, "the run on A [tokens=400]");
    const produced = `p_${Date.now().toString(36)}`;
    const producedEvents: Received[] = [];
    let counter = 0;
    const produce = async (count: number, terminal = false) => {
      const events: Array<{ type: string; data: Record<string, unknown> }> = [];
      if (counter === 0) events.push({ type: "start", data: { model: "producer" } });
      for (let i = 0; i < count; i++) events.push({ type: "token", data: { content: `t${counter++} ` } });
      if (terminal) events.push({ type: "done", data: { session_id: produced, total_tokens: counter } });
      const res = await postJson(`${b.url}/api/v1/sessions/${produced}/events`, { events });
      expect(res.status, res.text).toBe(202);
      for (const event of events) producedEvents.push({ type: event.type, data: JSON.stringify(event.data) });
    };
    await produce(20);

    const ids = [run, produced];
    const got = new Map<string, Received[]>(ids.map((id) => [id, []]));
    const cursors: string[] = [];
    const errorCodes: Array<number | undefined> = [];
    let connections = 0;
    const es = new EventSource(muxStream(c, ids));
    try {
      es.addEventListener("connected", () => {
        connections++;
      });
      es.addEventListener("error", (event) => {
        errorCodes.push(event.code);
      });
      for (const id of ids) {
        for (const type of ["start", "token", "usage", "done", "error", "cancelled"]) {
          es.addEventListener(`${id}:${type}`, (event: MessageEvent) => {
            got.get(id)!.push({ type, data: event.data as string });
            cursors.push(event.lastEventId);
          });
        }
      }
      const tokensOf = (id: string) => got.get(id)!.filter((event) => event.type === "token").length;
      const progress = () =>
        `run ${tokensOf(run)} tokens, producer ${tokensOf(produced)} tokens, ${connections} connections`;

      await waitUntil(() => tokensOf(produced) >= 20 && tokensOf(run) >= 10, progress);

      // A crash of the reading instance, mid-stream; appends go on elsewhere while it is down.
      c.kill("SIGKILL");
      await c.exited;
      await produce(50);
      c = await startGatewayProcess({ ...env, PORT: String(c.port) });
      await waitUntil(() => connections >= 2 && tokensOf(produced) >= 70, progress);
      await produce(20);
      await waitUntil(() => tokensOf(produced) >= 90, progress);

      // A graceful drain: the stream is closed with a `retry:`, the listener goes away, then comes back.
      await c.stop();
      await produce(50);
      c = await startGatewayProcess({ ...env, PORT: String(c.port) });
      await waitUntil(() => connections >= 3 && tokensOf(produced) >= 140, progress);

      await waitUntil(() => got.get(run)!.some((event) => TERMINAL.has(event.type)), progress);
      await produce(10, true);
      // All ended: the server closes the stream, the reconnect gets 204, and EventSource stops for good.
      await waitUntil(
        () => es.readyState === es.CLOSED,
        () => `EventSource closed; ${progress()}`,
      );
    } finally {
      es.close();
    }
    expect(errorCodes.at(-1)).toBe(204);
    for (const cursor of cursors) expect(cursor).toMatch(CURSOR_PATTERN);
    expect(got.get(produced)).toEqual(producedEvents);
    expect(got.get(run)).toEqual(await fullRead(b, run));
  });
});

async function collectClosed(conn: SseConnection): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`stream still open after ${STREAM_TIMEOUT_MS} ms (${conn.events.length} events)`)),
      STREAM_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([conn.closed, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
