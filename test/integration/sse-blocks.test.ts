/**
 * Fetch-based SSE clients (@microsoft/fetch-event-source, httpx-sse) see no empty messages: on every
 * kind of stream, no block that a blank line ends lacks `data:`. `retry:` and the `: ping` heartbeats
 * are lines that join the next event's block, from the stream's first bytes (sent at once, before any
 * event) to a draining instance's last `retry:`. Checked on the raw bytes, and with eventsource-parser.
 */
import { createParser } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closedWithin,
  collectUntilClosed,
  openSse,
  postJson,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const RETRY_MS = 2000;
/** Short, so that every stream below carries heartbeats too. */
const ENV = { RETRY_MS: String(RETRY_MS), HEARTBEAT_MS: "20", SIMULATED_TOKENS_PER_SECOND: "100" };
const WAIT_MS = 15_000;

let serial = 0;
const newId = (label: string) => `${label}-${process.pid}-${serial++}-${Date.now().toString(36)}`;

/**
 * The blocks that a blank line ends and that carry no `data:` line: fetch-event-source dispatches every
 * such block as a message, httpx-sse one that sets `retry` (or comes after an `id`).
 */
function blocksWithoutData(raw: string): string[] {
  return raw
    .split("\n\n")
    .slice(0, -1)
    .filter((block) => !block.split("\n").some((line) => line.startsWith("data:")));
}

/** The raw body checked: it opens with `retry:`, no block is empty of data, every event has a name and data. */
function expectNoEmptyMessages(raw: string): { retries: number[]; events: number; comments: number } {
  expect(raw.startsWith(`retry: ${RETRY_MS}\n`), raw.slice(0, 80)).toBe(true);
  expect(blocksWithoutData(raw)).toEqual([]);
  const retries: number[] = [];
  let events = 0;
  let comments = 0;
  const parser = createParser({
    onEvent(event) {
      expect(event.event, JSON.stringify(event)).toBeTruthy();
      expect(event.data, JSON.stringify(event)).not.toBe("");
      events++;
    },
    onRetry: (ms) => retries.push(ms),
    onComment: () => comments++,
  });
  parser.feed(raw);
  expect(retries[0]).toBe(RETRY_MS);
  expect(events).toBeGreaterThan(0);
  return { retries, events, comments };
}

describe("no stream has a block without data", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ env: ENV });
  });
  afterAll(() => gw.close());

  const run = async (tokens: number): Promise<string> => {
    const created = await postJson(`${gw.url}/api/v1/sessions`, { message: `blocks [tokens=${tokens}]` });
    expect(created.status).toBe(201);
    return created.body.id as string;
  };

  it("POST /api/v1/agent/stream", async () => {
    const res = await fetch(`${gw.url}/api/v1/agent/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ message: "agent [tokens=5]" }),
    });
    expect(res.status).toBe(200);
    expectNoEmptyMessages(await res.text());
  });

  it("GET /api/v1/sessions/:id/stream, and the multiplexed GET /api/v1/stream?sessions=", async () => {
    const ids = [await run(5), await run(8)];
    for (const url of [
      `${gw.url}/api/v1/sessions/${ids[0]}/stream`,
      `${gw.url}/api/v1/stream?sessions=${ids.join(",")}`,
    ]) {
      const conn = await collectUntilClosed(url, { timeoutMs: WAIT_MS });
      expect(conn.status).toBe(200);
      expectNoEmptyMessages(conn.raw());
    }
  });

  it("a stream idle before its first event: the retry line and the heartbeats join that event's block", async () => {
    const id = newId("idle");
    const first = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, {
      events: [{ type: "token", data: { content: "a" } }],
    });
    expect(first.status).toBe(202);
    // Resumed after the only event: nothing to send until the next.
    const conn = await openSse(`${gw.url}/api/v1/sessions/${id}/stream`, { lastEventId: first.body.ids[0] });
    await conn.waitFor(() => conn.comments.length >= 3, WAIT_MS);
    expect(conn.raw()).toMatch(new RegExp(`^retry: ${RETRY_MS}\\n(: ping\\n){3}`));
    const done = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, {
      events: [{ type: "done", data: { session_id: id, total_tokens: 1, finish_reason: "stop" } }],
    });
    expect(done.status).toBe(202);
    await closedWithin(conn, WAIT_MS);
    const { events, comments } = expectNoEmptyMessages(conn.raw());
    expect(events).toBe(1);
    expect(comments).toBeGreaterThanOrEqual(3);
  });
});

describe("a draining instance's goodbye", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ env: ENV });
  });
  afterAll(() => gw.close());

  it("ends each stream with a last `retry:` line that no blank line turns into a message", async () => {
    const id = newId("drain");
    await postJson(`${gw.url}/api/v1/sessions/${id}/events`, {
      events: [{ type: "token", data: { content: "a" } }],
    });
    const single = await openSse(`${gw.url}/api/v1/sessions/${id}/stream`);
    const multiplexed = await openSse(`${gw.url}/api/v1/stream?sessions=${id},@sessions`);
    await single.waitForEvent("token", WAIT_MS);
    await multiplexed.waitForEvent(`${id}:token`, WAIT_MS);
    // A goodbye delay far from RETRY_MS, so the last retry is told apart from the first.
    await gw.gateway.context.streams.closeAll(0, 100_000);
    for (const conn of [single, multiplexed]) {
      await closedWithin(conn, WAIT_MS);
      expect(conn.raw()).toMatch(/\n\nretry: \d+\n$|\n: ping\nretry: \d+\n$/);
      const { retries } = expectNoEmptyMessages(conn.raw());
      expect(retries).toHaveLength(2);
      expect(retries[1]).toBeGreaterThanOrEqual(50_000);
    }
  });
});
