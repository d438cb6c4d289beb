/**
 * The gateway driving the REAL `openai` SDK against an OpenAI-compatible fixture server: tokens arrive
 * byte-exact, the upstream request is what OpenAI expects, usage and totals are right, and every
 * failure (HTTP error, cut, cancel) ends the session with exactly one terminal event.
 */
import http from "node:http";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  closedWithin,
  getJson,
  openSse,
  postJson,
  type SseEvent,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const API_KEY = "test-key";
const TERMINAL = new Set(["done", "error", "cancelled"]);
const STREAM_TIMEOUT_MS = 15_000;

type Json = Record<string, unknown>;
const dataOf = (event: SseEvent): Json => JSON.parse(event.data) as Json;
const tokensOf = (events: SseEvent[]) =>
  events.filter((e) => e.event === "token").map((e) => dataOf(e).content);
const terminalsOf = (events: SseEvent[]) => events.filter((e) => TERMINAL.has(e.event));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts a session and reads its whole stream (it closes after the terminal event). */
async function runToEnd(gw: TestGateway, body: Json): Promise<{ id: string; events: SseEvent[] }> {
  const created = await postJson(`${gw.url}/api/v1/sessions`, body);
  expect(created.status, created.text).toBe(201);
  const stream = await openSse(`${gw.url}${created.body.streamUrl}`);
  cleanups.push(() => stream.close());
  expect(stream.status).toBe(200);
  await closedWithin(stream);
  return { id: created.body.id as string, events: stream.events };
}

/** Exactly one terminal event, and it is the last one. */
function expectOneTerminal(events: SseEvent[], type: string): Json {
  const terminals = terminalsOf(events);
  expect(terminals.map((e) => e.event)).toEqual([type]);
  expect(events[events.length - 1]!.event).toBe(type);
  return dataOf(terminals[0]!);
}

function expectOpenAIStart(events: SseEvent[], model = "gpt-test"): void {
  expect(events[0]!.event).toBe("start");
  const start = dataOf(events[0]!);
  expect(start.model).toBe(model);
  expect(start).not.toHaveProperty("simulated");
  expect(typeof start.createdAt).toBe("string");
}

/**
 * A plain TCP relay in front of the fixture: it shows whether the gateway dropped the connection that
 * carried its upstream request.
 */
async function startRelay(targetPort: number) {
  const open = new Set<net.Socket>();
  /** Connections on which the gateway sent bytes (an HTTP request), open or not. */
  const carriers = new Map<net.Socket, { closed: boolean }>();
  const server = net.createServer((client) => {
    open.add(client);
    const upstream = net.connect(targetPort, "127.0.0.1");
    client.on("data", () => {
      if (!carriers.has(client)) carriers.set(client, { closed: false });
    });
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", () => {});
    upstream.on("error", () => {});
    client.on("close", () => {
      open.delete(client);
      const carrier = carriers.get(client);
      if (carrier) carrier.closed = true;
      upstream.destroy();
    });
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    carriers: () => [...carriers.values()],
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A minimal OpenAI-compatible stream that never sends a usage chunk (as some compatible servers do,
 * even when asked for `include_usage`).
 */
async function startNoUsageServer(tokens: string[]) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (delta: Json, finish: string | null = null) =>
        `data: ${JSON.stringify({
          id: "chatcmpl-nousage",
          object: "chat.completion.chunk",
          created: Math.floor(Date.now() / 1000),
          model: "gpt-test",
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        })}\n\n`;
      let body = chunk({ role: "assistant", content: "" });
      for (const token of tokens) body += chunk({ content: token });
      body += chunk({}, "stop");
      body += "data: [DONE]\n\n";
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("OpenAI runs through the real SDK", () => {
  let fixture: OpenAIFixture;
  let gw: TestGateway;

  const startGateway = (baseUrl: string) =>
    startTestGateway({
      redisUrl: inject("redisUrl"),
      env: {
        OPENAI_API_KEY: API_KEY,
        OPENAI_BASE_URL: baseUrl,
        DEFAULT_MODEL: "gpt-test",
        CANCEL_GRACE_MS: "3000",
      },
    });

  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    gw = await startGateway(fixture.url);
  });
  afterAll(async () => {
    await gw?.close();
    await fixture?.close();
  });

  it("delivers tokens byte-exact, sends the right request, and reports the upstream usage", async () => {
    const tokens = [
      "Hello",
      "\n",
      "line\r",
      "\r\n",
      "",
      '"quoted" and \\"escaped\\"',
      "back\\slash\\",
      "",
      " emoji 🎉👩‍👩‍👧 é",
      "\u2028sep\u2029",
      "tab\there",
      "data: not a frame\n\nid: 1\n",
      "",
      " end",
    ];
    const usage = { prompt_tokens: 11, completion_tokens: 22, total_tokens: 33 };
    // Split every frame in 3-byte slices: multi-byte characters straddle reads.
    fixture.script({ tokens, usage, fragmentBytes: 3 });
    const before = fixture.requests.length;

    const { id, events } = await runToEnd(gw, { message: "write something", instructions: "You are terse." });

    const nonEmpty = tokens.filter((token) => token !== "");
    expect(tokensOf(events)).toEqual(nonEmpty);
    expect(tokensOf(events).join("")).toBe(tokens.join(""));
    expectOpenAIStart(events);
    expect(events.map((e) => e.event)).toEqual([
      "start",
      ...Array(nonEmpty.length).fill("token"),
      "usage",
      "done",
    ]);
    expect(dataOf(events.find((e) => e.event === "usage")!)).toEqual(usage);
    const done = expectOneTerminal(events, "done");
    expect(done).toEqual({ session_id: id, total_tokens: usage.total_tokens, finish_reason: "stop" });

    // What the SDK sent upstream.
    expect(fixture.requests.length).toBe(before + 1);
    const request = fixture.requests[before]!;
    const body = request.body as Json;
    expect(body.model).toBe("gpt-test");
    expect(body.stream).toBe(true);
    expect(body.stream_options).toEqual({ include_usage: true });
    expect(body.messages).toEqual([
      { role: "system", content: "You are terse." },
      { role: "user", content: "write something" },
    ]);
    expect(request.headers.authorization).toBe(`Bearer ${API_KEY}`);

    const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
    expect(info.body).toMatchObject({ id, status: "done", model: "gpt-test" });
  });

  it("uses the requested model", async () => {
    fixture.script({ tokens: ["a", "b"] });
    const before = fixture.requests.length;
    const { events } = await runToEnd(gw, { message: "hi", model: "gpt-other" });
    expect((fixture.requests[before]!.body as Json).model).toBe("gpt-other");
    expect((fixture.requests[before]!.body as Json).messages).toEqual([{ role: "user", content: "hi" }]);
    expectOpenAIStart(events, "gpt-other");
    expectOneTerminal(events, "done");
  });

  it("without usage from the upstream, done.total_tokens is the number of token events", async () => {
    const tokens = ["one", "", " two", " three", "\n", "four"];
    const noUsage = await startNoUsageServer(tokens);
    cleanups.push(() => noUsage.close());
    const other = await startGateway(noUsage.url);
    cleanups.push(() => other.close());

    const { events } = await runToEnd(other, { message: "count" });
    expectOpenAIStart(events);
    expect(events.some((e) => e.event === "usage")).toBe(false);
    expect(tokensOf(events)).toEqual(tokens.filter((token) => token !== ""));
    const done = expectOneTerminal(events, "done");
    expect(done.total_tokens).toBe(tokensOf(events).length);
    expect(done.total_tokens).toBe(5);
  });

  it("an HTTP 500 before the stream ends the session with upstream_unavailable, leaking nothing", async () => {
    fixture.script({ status: 500 });
    const { id, events } = await runToEnd(gw, { message: "fail please" });
    expectOpenAIStart(events);
    expect(tokensOf(events)).toEqual([]);
    const error = expectOneTerminal(events, "error");
    expect(error.code).toBe("upstream_unavailable");
    const message = String(error.message);
    expect(message.length).toBeGreaterThan(0);
    expect(message).not.toContain(API_KEY);
    expect(message).not.toMatch(/\n\s*at |\.ts:\d|\.js:\d|node_modules/);
    expect(message).not.toContain("server had an error"); // the upstream's own text is not passed through
    expect(events.map((e) => e.event)).toEqual(["start", "error"]);
    const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
    expect(info.body.status).toBe("error");
  });

  it("a cut mid-stream keeps the tokens before it, then ends with upstream_disconnected", async () => {
    let tokensStored = () => {};
    const cutWhen = new Promise<void>((resolve) => {
      tokensStored = resolve;
    });
    fixture.script({ tokens: ["alpha", " beta", " gamma", " delta", " epsilon"], cutAfter: 3, cutWhen });
    const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "cut" });
    expect(created.status, created.text).toBe(201);
    const stream = await openSse(`${gw.url}${created.body.streamUrl}`);
    cleanups.push(() => stream.close());
    await stream.waitFor((seen) => tokensOf(seen).length === 3, STREAM_TIMEOUT_MS);
    tokensStored();
    await closedWithin(stream);
    const { events } = stream;
    expectOpenAIStart(events);
    expect(tokensOf(events)).toEqual(["alpha", " beta", " gamma"]);
    const error = expectOneTerminal(events, "error");
    expect(error.code).toBe("upstream_disconnected");
    expect(String(error.message)).not.toContain(API_KEY);
    expect(events.some((e) => e.event === "usage" || e.event === "done")).toBe(false);
  });

  it("cancel during a hanging stream ends with cancelled and aborts the upstream request", async () => {
    const fixturePort = Number(new URL(fixture.url).port);
    const relay = await startRelay(fixturePort);
    cleanups.push(() => relay.close());
    const other = await startGateway(relay.url);
    cleanups.push(() => other.close());

    fixture.script({ tokens: ["first", " second", " never"], hangAfter: 2 });
    const created = await postJson(`${other.url}/api/v1/sessions`, { message: "hang" });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const stream = await openSse(`${other.url}${created.body.streamUrl}`);
    cleanups.push(() => stream.close());
    await stream.waitFor(
      (events) => events.filter((e) => e.event === "token").length === 2,
      STREAM_TIMEOUT_MS,
    );
    expect(relay.carriers()).toEqual([{ closed: false }]);

    const cancel = await postJson(`${other.url}/api/v1/sessions/${id}/cancel`, {});
    expect(cancel.status).toBe(202);
    expect(cancel.body).toEqual({ id, status: "cancelled" });
    await closedWithin(stream);

    expectOpenAIStart(stream.events);
    expect(tokensOf(stream.events)).toEqual(["first", " second"]);
    expect(expectOneTerminal(stream.events, "cancelled")).toEqual({ reason: "requested" });
    // The gateway dropped its connection to the upstream: the hanging request was aborted.
    await waitUntil(() => relay.carriers()[0]!.closed, 5_000, "the upstream request's connection to close");
    expect(relay.carriers()).toHaveLength(1);

    // Nothing more is ever appended after the terminal event.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const info = await getJson(`${other.url}/api/v1/sessions/${id}`);
    expect(info.body.status).toBe("cancelled");
    const replay = await openSse(`${other.url}/api/v1/sessions/${id}/stream`);
    cleanups.push(() => replay.close());
    await closedWithin(replay);
    expect(replay.events.map((e) => e.event)).toEqual(stream.events.map((e) => e.event));
  });
});

describe("without an API key", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ redisUrl: inject("redisUrl") });
  });
  afterAll(() => gw?.close());

  it("runs the simulated model, labelled as such", async () => {
    const { id, events } = await runToEnd(gw, { message: "hello [tokens=4]" });
    expect(events[0]!.event).toBe("start");
    const start = dataOf(events[0]!);
    expect(start.simulated).toBe(true);
    expect(start.model).toBe("simulated");
    expect(tokensOf(events)).toHaveLength(4);
    expect(expectOneTerminal(events, "done").total_tokens).toBeGreaterThanOrEqual(4);
    const info = await getJson(`${gw.url}/api/v1/sessions/${id}`);
    expect(info.body.model).toBe("simulated");
  });
});
