/**
 * An upstream that streams far faster than the store takes its events slows down (the run stops
 * reading it while its buffer is full) instead of ending a healthy run with `store_unavailable`: a
 * burst of deltas with no pause, read by a client that pauses first, arrives whole, byte for byte,
 * and the run ends with `done`. Through both ways of starting a run, at the default retention (10,000
 * events kept, the rest folded into the snapshot as the run goes). A reader that stopped reading and
 * reads on from where it was after the run, behind the fold, gets the snapshot (which replaces what it
 * had), then the kept events: the same text. Each run's `run ended` line shows its writer waited for
 * room (the buffer filled), which no timing decides.
 */
import type { IncomingMessage } from "node:http";
import { createParser } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { burstTokens, type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  agentStreamRequest,
  assembledText,
  closedWithin,
  type GatewayProcess,
  getJson,
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
/**
 * The reader reads nothing for at least this long, and until the run has ended: the run's 50,000
 * events pile up in the store meanwhile, and all but the last 10,000 are folded.
 */
const READER_PAUSE_MS = 5_000;
const RUN_TIMEOUT_MS = 120_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves once the session has ended (polled on another connection) and at least `ms` have passed. */
async function pauseUntilEnded(url: string, id: string, ms: number): Promise<void> {
  const until = sleep(ms);
  for (;;) {
    const info = await getJson(`${url}/api/v1/sessions/${id}`);
    if (info.status === 200 && info.body.status !== "running") break;
    await sleep(100);
  }
  await until;
}

/** The run ended with `done` (and nothing else ended it), and its text is the upstream's, exactly. */
function expectWhole(events: SseEvent[], upstreamText: string): void {
  const ends = events.filter((event) => ["done", "error", "cancelled"].includes(event.event));
  expect(ends.map((event) => `${event.event} ${event.data}`)).toEqual([expect.stringMatching(/^done /)]);
  expect(events.at(-1)?.event).toBe("done");
  expect(JSON.parse(ends[0]!.data)).toMatchObject({ finish_reason: "stop" });
  // Compared without a 600 KB diff on failure: where the texts part, if they do.
  const text = assembledText(events);
  let at = 0;
  while (at < text.length && text[at] === upstreamText[at]) at++;
  const difference =
    at === text.length && at === upstreamText.length
      ? null
      : `at ${at} of ${upstreamText.length}: ${JSON.stringify(text.slice(at, at + 40))}, expected ${JSON.stringify(upstreamText.slice(at, at + 40))}`;
  expect(difference).toBeNull();
}

/** The reader fell behind the fold: one snapshot, of many folded tokens, before the kept events. */
function expectSnapshot(events: SseEvent[]): void {
  const snapshots = events.filter((event) => event.event === "snapshot");
  expect(snapshots).toHaveLength(1);
  const folded = (JSON.parse(snapshots[0]!.data) as { folded: Record<string, number> }).folded;
  expect(folded.token).toBeGreaterThan(DELTAS - 10_000 - 200);
}

/** The run's buffer filled, and its reading of the model waited for the store: its `run ended` line says how often. */
async function expectWriterWaited(gw: GatewayProcess, id: string): Promise<void> {
  const ended = new RegExp(`"sessionId":"${id}"[^\n]*"msg":"run ended"`);
  await gw.waitForLog(ended, 10_000);
  const line = gw
    .logs()
    .split("\n")
    .find((candidate) => ended.test(candidate));
  const fields = JSON.parse(line ?? "{}") as { status?: string; fullBufferWaits?: number };
  expect(fields.status).toBe("done");
  expect(fields.fullBufferWaits).toBeGreaterThan(0);
}

/**
 * `POST /api/v1/agent/stream`, read only after `pauseMs` and once its session has ended: the socket is
 * not read until then.
 */
function postStreamPausedFirst(
  url: string,
  body: unknown,
  pauseMs: number,
): Promise<{ status: number; id: string; events: SseEvent[] }> {
  return new Promise((resolve, reject) => {
    const { req, payload } = agentStreamRequest(url, body);
    req.once("error", reject);
    req.once("response", (res: IncomingMessage) => {
      res.pause();
      res.socket.pause();
      const events: SseEvent[] = [];
      const parser = createParser({
        onEvent: (message) => events.push({ event: message.event ?? "message", data: message.data }),
      });
      const id = String(res.headers["x-session-id"]);
      pauseUntilEnded(url, id, pauseMs).then(() => {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => parser.feed(chunk));
        res.once("end", () => resolve({ status: res.statusCode ?? 0, id, events }));
        res.once("error", reject);
        res.socket.resume();
        res.resume();
      }, reject);
    });
    req.end(payload);
  });
}

/** `POST /api/v1/agent/stream`, read until `tokens` tokens arrived, then dropped (the run goes on). */
function postStreamThenDrop(
  url: string,
  body: unknown,
  tokens: number,
): Promise<{ id: string; events: SseEvent[] }> {
  return new Promise((resolve, reject) => {
    const { req, payload } = agentStreamRequest(url, body);
    req.once("error", reject);
    req.once("response", (res: IncomingMessage) => {
      const id = String(res.headers["x-session-id"]);
      const events: SseEvent[] = [];
      let seen = 0;
      let dropped = false;
      const parser = createParser({
        onEvent: (message) => {
          if (dropped) return;
          events.push({
            event: message.event ?? "message",
            data: message.data,
            ...(message.id === undefined ? {} : { id: message.id }),
          });
          if (message.event === "token" && ++seen >= tokens) {
            dropped = true;
            res.destroy();
            resolve({ id, events });
          }
        },
      });
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => parser.feed(chunk));
      res.once("end", () => reject(new Error("the stream ended before it was dropped")));
      res.once("error", () => {});
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
      // `run ended` (info) tells how often the run waited for its buffer.
      LOG_LEVEL: "info",
      OPENAI_API_KEY: "test-key",
      OPENAI_BASE_URL: fixture.url,
      DEFAULT_MODEL: "gpt-test",
      RUN_BUFFER_MAX_EVENTS: String(RUN_BUFFER_MAX_EVENTS),
      // MAX_EVENTS_PER_SESSION at its default: the run is compacted as it goes.
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
      await pauseUntilEnded(gw.url, created.body.id as string, READER_PAUSE_MS);
      stream.resume();
      await closedWithin(stream, RUN_TIMEOUT_MS);
      expectWhole(stream.events, upstreamText);
      await expectWriterWaited(gw, created.body.id as string);
    },
    RUN_TIMEOUT_MS + READER_PAUSE_MS,
  );

  it(
    "POST /api/v1/agent/stream read after a pause: done, and the text byte for byte",
    async () => {
      fixture.script({ tokens, delayMs: 0, gatherChars: UPSTREAM_WRITE_CHARS });
      const { status, id, events } = await postStreamPausedFirst(
        gw.url,
        { message: "go fast" },
        READER_PAUSE_MS,
      );
      expect(status).toBe(200);
      expectWhole(events, upstreamText);
      await expectWriterWaited(gw, id);
    },
    RUN_TIMEOUT_MS + READER_PAUSE_MS,
  );

  // A paused socket on loopback takes the whole run (3.5 MB: the kernel's buffers grow to hold it),
  // so the reader above is never behind the fold. A reader that stops reading altogether (its
  // connection gone) and reads on after the run, from where it was, is.
  it(
    "POST /api/v1/sessions, its reader gone after the first tokens and back after the run: the snapshot, then the rest, byte for byte",
    async () => {
      fixture.script({ tokens, delayMs: 0, gatherChars: UPSTREAM_WRITE_CHARS });
      const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "go fast" });
      expect(created.status, created.text).toBe(201);
      const id = created.body.id as string;
      const first = await openSse(`${gw.url}${created.body.streamUrl}`);
      await first.waitFor((events) => events.filter((event) => event.event === "token").length >= 10, 30_000);
      first.close();
      await first.closed;
      await pauseUntilEnded(gw.url, id, READER_PAUSE_MS);
      const rest = await openSse(`${gw.url}${created.body.streamUrl}`, { lastEventId: first.lastId() ?? "" });
      await closedWithin(rest, RUN_TIMEOUT_MS);
      expect(assembledText(first.events).length).toBeGreaterThan(0);
      expect(rest.events[0]?.event).toBe("snapshot");
      expectSnapshot(rest.events);
      expectWhole([...first.events, ...rest.events], upstreamText);
      await expectWriterWaited(gw, id);
    },
    RUN_TIMEOUT_MS + READER_PAUSE_MS,
  );

  it(
    "POST /api/v1/agent/stream dropped after the first tokens, resumed after the run: the snapshot, then the rest, byte for byte",
    async () => {
      fixture.script({ tokens, delayMs: 0, gatherChars: UPSTREAM_WRITE_CHARS });
      const { id, events: first } = await postStreamThenDrop(gw.url, { message: "go fast" }, 10);
      await pauseUntilEnded(gw.url, id, READER_PAUSE_MS);
      const rest = await openSse(`${gw.url}/api/v1/sessions/${id}/stream`, {
        lastEventId: first.at(-1)?.id ?? "",
      });
      await closedWithin(rest, RUN_TIMEOUT_MS);
      expect(rest.events[0]?.event).toBe("snapshot");
      expectSnapshot(rest.events);
      expectWhole([...first, ...rest.events], upstreamText);
      await expectWriterWaited(gw, id);
    },
    RUN_TIMEOUT_MS + READER_PAUSE_MS,
  );
});
