/**
 * An upstream that streams far faster than the store takes its events slows down (the run stops
 * reading it while its buffer is full) instead of ending a healthy run with `store_unavailable`: a
 * burst of deltas with no pause, read by a client that pauses first, arrives whole, byte for byte,
 * and the run ends with `done`. Through both ways of starting a run.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { createParser } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { burstTokens, type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  closedWithin,
  type GatewayProcess,
  openSse,
  postJson,
  randomPrefix,
  type SseEvent,
  startGatewayProcess,
} from "../helpers/index.js";

const DELTAS = 50_000;
/**
 * Smaller than what one read of the upstream's socket carries (a 64 KB read holds ~300 deltas, all
 * parsed before the writer's next batch goes out): the buffer is sure to fill while Redis answers.
 */
const RUN_BUFFER_MAX_EVENTS = 200;
/** The upstream writes its burst ~1,000 deltas at a time. */
const UPSTREAM_WRITE_CHARS = 256 * 1024;
/** The reader reads nothing for this long: the run's events pile up in the store meanwhile. */
const READER_PAUSE_MS = 5_000;
const RUN_TIMEOUT_MS = 120_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function textOf(events: SseEvent[]): string {
  let text = "";
  for (const event of events) {
    if (event.event === "token") text += (JSON.parse(event.data) as { content: string }).content;
  }
  return text;
}

/** The run ended with `done` (and nothing else ended it), and its text is the upstream's, exactly. */
function expectWhole(events: SseEvent[], upstreamText: string): void {
  const ends = events.filter((event) => ["done", "error", "cancelled"].includes(event.event));
  expect(ends.map((event) => `${event.event} ${event.data}`)).toEqual([expect.stringMatching(/^done /)]);
  expect(events.at(-1)?.event).toBe("done");
  expect(JSON.parse(ends[0]!.data)).toMatchObject({ finish_reason: "stop" });
  // Compared without a 600 KB diff on failure: where the texts part, if they do.
  const text = textOf(events);
  let at = 0;
  while (at < text.length && text[at] === upstreamText[at]) at++;
  const difference =
    at === text.length && at === upstreamText.length
      ? null
      : `at ${at} of ${upstreamText.length}: ${JSON.stringify(text.slice(at, at + 40))}, expected ${JSON.stringify(upstreamText.slice(at, at + 40))}`;
  expect(difference).toBeNull();
}

/** `POST /api/v1/agent/stream`, read only after `pauseMs`: the socket is not read until then. */
function postStreamPausedFirst(
  url: string,
  body: unknown,
  pauseMs: number,
): Promise<{ status: number; events: SseEvent[] }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = httpRequest(`${url}/api/v1/agent/stream`, {
      method: "POST",
      agent: false,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(payload),
        accept: "text/event-stream",
      },
    });
    req.once("error", reject);
    req.once("response", (res: IncomingMessage) => {
      res.pause();
      res.socket.pause();
      const events: SseEvent[] = [];
      const parser = createParser({
        onEvent: (message) => events.push({ event: message.event ?? "message", data: message.data }),
      });
      setTimeout(() => {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => parser.feed(chunk));
        res.once("end", () => resolve({ status: res.statusCode ?? 0, events }));
        res.once("error", reject);
        res.socket.resume();
        res.resume();
      }, pauseMs);
    });
    req.end(payload);
  });
}

describe("a burst from the upstream is slowed down, never cut", () => {
  let fixture: OpenAIFixture;
  let gw: GatewayProcess;
  const tokens = burstTokens(DELTAS);
  const upstreamText = tokens.join("");

  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    // A process of its own: the upstream (this process) is not slowed down by the gateway's work.
    gw = await startGatewayProcess({
      REDIS_URL: inject("redisUrl"),
      REDIS_KEY_PREFIX: randomPrefix(),
      LOG_LEVEL: "warn",
      OPENAI_API_KEY: "test-key",
      OPENAI_BASE_URL: fixture.url,
      DEFAULT_MODEL: "gpt-test",
      RUN_BUFFER_MAX_EVENTS: String(RUN_BUFFER_MAX_EVENTS),
      // The whole run stays in the store: this test is about the run, not about retention.
      MAX_EVENTS_PER_SESSION: String(DELTAS * 2),
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await fixture?.close();
  });

  it(
    "POST /api/v1/sessions, then its stream read after a pause: done, and the text byte for byte",
    async () => {
      fixture.script({ tokens, delayMs: 0, gatherChars: UPSTREAM_WRITE_CHARS });
      const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "go fast" });
      expect(created.status, created.text).toBe(201);
      const stream = await openSse(`${gw.url}${created.body.streamUrl}`);
      expect(stream.status).toBe(200);
      stream.pause();
      await sleep(READER_PAUSE_MS);
      stream.resume();
      await closedWithin(stream, RUN_TIMEOUT_MS);
      expectWhole(stream.events, upstreamText);
    },
    RUN_TIMEOUT_MS + READER_PAUSE_MS,
  );

  it(
    "POST /api/v1/agent/stream read after a pause: done, and the text byte for byte",
    async () => {
      fixture.script({ tokens, delayMs: 0, gatherChars: UPSTREAM_WRITE_CHARS });
      const { status, events } = await postStreamPausedFirst(gw.url, { message: "go fast" }, READER_PAUSE_MS);
      expect(status).toBe(200);
      expectWhole(events, upstreamText);
    },
    RUN_TIMEOUT_MS + READER_PAUSE_MS,
  );
});
