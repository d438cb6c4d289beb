/**
 * Readers of compacted sessions (retention without loss): a live reader whose socket stalls while the
 * run goes on falls behind what was folded, gets the snapshot (which replaces what it had) and then the
 * kept events, and ends with the upstream's text; a reader asking for history that expired entirely
 * (the session's TTL passed) still gets `gap`. Real gateway, real Redis, the OpenAI fixture upstream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  assembledText,
  closedWithin,
  getJson,
  openSse,
  postJson,
  type SseConnection,
  type SseEvent,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const TERMINALS = new Set(["done", "error", "cancelled"]);
/** Kept events per session: everything older is folded into the snapshot. */
const KEPT = 10;
/**
 * 8 MB of text in 2,000 deltas: more than a stalled loopback socket takes (the kernel's buffers grow
 * to a few MB), so the reader is left behind the fold.
 */
const DELTAS = 2_000;
const DELTA_CHARS = 4_000;
const RUN_TIMEOUT_MS = 120_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function untilStatus(url: string, id: string, done: (status: number, body: unknown) => boolean) {
  for (;;) {
    const info = await getJson(`${url}/api/v1/sessions/${id}`);
    if (done(info.status, info.body)) return;
    await sleep(50);
  }
}

let fixture: OpenAIFixture;
const gateways: TestGateway[] = [];
const streams: SseConnection[] = [];
beforeAll(async () => {
  fixture = await startOpenAIFixture();
});
afterEach(async () => {
  for (const stream of streams.splice(0)) stream.close();
  for (const gateway of gateways.splice(0)) await gateway.close();
});
afterAll(async () => {
  await fixture?.close();
});

async function gateway(env: Record<string, string>): Promise<TestGateway> {
  const gw = await startTestGateway({
    redisUrl: inject("redisUrl"),
    env: { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fixture.url, DEFAULT_MODEL: "gpt-test", ...env },
  });
  gateways.push(gw);
  return gw;
}

describe("readers of compacted sessions", () => {
  it(
    "a live reader whose socket stalls falls behind the fold: the snapshot replaces what it had, and its text ends as the upstream's",
    async () => {
      const gw = await gateway({ MAX_EVENTS_PER_SESSION: String(KEPT) });
      const tokens = Array.from({ length: DELTAS }, (_, i) => `<${i}>${"x".repeat(DELTA_CHARS)}`);
      const upstreamText = tokens.join("");
      // The upstream answers a moment after the run starts, then bursts: the reader is live by then.
      fixture.script({ tokens, delayMs: 0, gatherChars: 256 * 1024, answerAfterMs: 500 });
      const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "go" });
      expect(created.status, created.text).toBe(201);
      const id = created.body.id as string;

      // Live: the reader has some of the text when it stops reading.
      const live = await openSse(`${gw.url}${created.body.streamUrl}`);
      streams.push(live);
      await live.waitForEvent("start", 30_000);
      await live.waitFor((events) => events.some((event) => event.event === "token"), 30_000);
      live.pause();
      await untilStatus(
        gw.url,
        id,
        (status, body) => status === 200 && (body as { status: string }).status !== "running",
      );
      live.resume();
      // A stream the server ended early (a slow client) is resumed from its last id, as a browser does.
      const received: SseEvent[] = [];
      let stream = live;
      for (;;) {
        await closedWithin(stream, RUN_TIMEOUT_MS);
        received.push(...stream.events);
        if (received.some((event) => TERMINALS.has(event.event))) break;
        stream = await openSse(`${gw.url}${created.body.streamUrl}`, {
          lastEventId: received.at(-1)?.id ?? "",
        });
        streams.push(stream);
      }

      const at = received.findIndex((event) => event.event === "snapshot");
      expect(at).toBeGreaterThan(0);
      // What it had before the snapshot was real text, which the snapshot then replaced.
      expect(assembledText(received.slice(0, at)).length).toBeGreaterThan(0);
      expect(received.filter((event) => event.event === "snapshot")).toHaveLength(1);
      const text = assembledText(received);
      expect(text.length).toBe(upstreamText.length);
      expect(text === upstreamText).toBe(true);
      expect(received.filter((event) => TERMINALS.has(event.event)).map((event) => event.event)).toEqual([
        "done",
      ]);
      expect(received.at(-1)?.event).toBe("done");
    },
    RUN_TIMEOUT_MS * 2,
  );

  it("a reader whose history expired entirely (the session's TTL passed) gets gap {requested, oldest: null}", async () => {
    const gw = await gateway({ ENDED_SESSION_TTL_SECONDS: "1" });
    const id = `expiring-${Date.now()}`;
    const appended = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, {
      events: [
        { type: "token", data: { content: "soon " } },
        { type: "token", data: { content: "gone" } },
        { type: "done", data: { session_id: id, total_tokens: 2, finish_reason: "stop" } },
      ],
    });
    expect(appended.status, appended.text).toBe(202);
    const first = await openSse(`${gw.url}/api/v1/stream?sessions=${id}`);
    streams.push(first);
    await closedWithin(first);
    const cursor = first.events.find((event) => event.event === `${id}:token`)?.id;
    expect(cursor).toBeDefined();

    // Gone entirely: not compacted, expired.
    await untilStatus(gw.url, id, (status) => status === 404);
    const again = await openSse(`${gw.url}/api/v1/stream?sessions=${id}`, { lastEventId: cursor ?? "" });
    streams.push(again);
    expect(again.status).toBe(200);
    const gap = await again.waitForEvent(`${id}:gap`);
    expect(gap.id).toBeUndefined();
    const data = JSON.parse(gap.data) as { requested: unknown; oldest: unknown };
    expect(data.oldest).toBeNull();
    expect(data.requested).toBeTruthy();
    expect(again.events.some((event) => event.event === `${id}:snapshot`)).toBe(false);
  });
});
