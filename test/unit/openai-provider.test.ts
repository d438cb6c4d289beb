import http from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../../src/agent/openai-provider.js";
import { type ModelChunk, type ModelProvider, UpstreamError } from "../../src/agent/types.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";

const API_KEY = "sk-test-SECRET-key-0123456789";
const LONG_TIMEOUT_MS = 60_000;

let fixture: OpenAIFixture;

beforeAll(async () => {
  fixture = await startOpenAIFixture();
});
afterAll(async () => {
  await fixture.close();
});

function provider(options: { timeoutMs?: number; maxOutputTokens?: number; baseURL?: string } = {}) {
  const client = new OpenAI({ apiKey: API_KEY, baseURL: options.baseURL ?? fixture.url, maxRetries: 0 });
  return createOpenAIProvider({
    client,
    timeoutMs: options.timeoutMs ?? LONG_TIMEOUT_MS,
    ...(options.maxOutputTokens === undefined ? {} : { maxOutputTokens: options.maxOutputTokens }),
  });
}

interface Outcome {
  chunks: ModelChunk[];
  tokens: string[];
  error: unknown;
}

async function run(
  model: ModelProvider,
  signal = new AbortController().signal,
  onChunk?: (chunk: ModelChunk, chunks: ModelChunk[]) => void,
): Promise<Outcome> {
  const chunks: ModelChunk[] = [];
  let error: unknown;
  try {
    for await (const chunk of model.stream({
      model: "gpt-test",
      messages: [{ role: "user", content: "hi" }],
      signal,
    })) {
      chunks.push(chunk);
      onChunk?.(chunk, chunks);
    }
  } catch (caught) {
    error = caught;
  }
  const tokens = chunks.flatMap((chunk) => (chunk.kind === "token" ? [chunk.content] : []));
  return { chunks, tokens, error };
}

function expectUpstreamError(error: unknown, code: string) {
  expect(error).toBeInstanceOf(UpstreamError);
  const upstream = error as UpstreamError;
  expect(upstream.code).toBe(code);
  for (const text of [upstream.message, String(upstream), JSON.stringify(upstream), upstream.stack ?? ""]) {
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain("SECRET");
  }
}

const TRICKY_TOKENS = [
  "\n",
  "\r",
  "\r\n",
  "\n\n",
  "\r\n\r\n",
  '"quoted"',
  "back\\slash \\n not a newline",
  "😀",
  "👩‍👩‍👧‍👦",
  "\u{1F600}\u{1F680}",
  "line\u2028separator\u2029paragraph",
  "  leading and trailing  ",
  " ",
  "\t",
  "data: [DONE]",
  "\n\ndata: {}\n\n",
  "é ü 中文 العربية",
  "\u0000nul",
  "\ud83d",
];

describe("openai provider", () => {
  it("round-trips every delta byte-exactly and skips empty deltas", async () => {
    fixture.script({ tokens: ["", ...TRICKY_TOKENS, ""] });
    const { tokens, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(tokens).toEqual(TRICKY_TOKENS);
  });

  it("round-trips when frames are split mid-character across TCP writes", async () => {
    fixture.script({ tokens: TRICKY_TOKENS, fragmentBytes: 3, delayMs: 0 });
    const { tokens, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(tokens).toEqual(TRICKY_TOKENS);
  });

  it("reads the usage chunk with empty choices, then finishes last", async () => {
    const usage = { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 };
    fixture.script({ tokens: ["a", "b", "c"], usage });
    const { chunks, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(chunks).toEqual([
      { kind: "token", content: "a" },
      { kind: "token", content: "b" },
      { kind: "token", content: "c" },
      { kind: "usage", usage },
      { kind: "finish", reason: "stop" },
    ]);
  });

  it("passes the upstream finish reason through", async () => {
    fixture.script({ tokens: ["cut", " short"], finishReason: "length" });
    const { chunks } = await run(provider());
    expect(chunks.at(-1)).toEqual({ kind: "finish", reason: "length" });
  });

  it("asks for a stream with usage, and sends max_tokens only when configured", async () => {
    const before = fixture.requests.length;
    await run(provider());
    await run(provider({ maxOutputTokens: 64 }));
    const [plain, capped] = fixture.requests.slice(before).map((request) => request.body);
    expect(plain).toMatchObject({ model: "gpt-test", stream: true, stream_options: { include_usage: true } });
    expect(plain).not.toHaveProperty("max_tokens");
    expect(capped).toMatchObject({ max_tokens: 64 });
    expect(fixture.requests.at(-1)?.headers.authorization).toBe(`Bearer ${API_KEY}`);
  });

  it("handles a fast, large stream", async () => {
    const many = Array.from({ length: 5000 }, (_, i) => ` t${i}`);
    fixture.script({ tokens: many, delayMs: 0 });
    const { tokens, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(tokens).toEqual(many);
  });

  it.each([
    [500, "upstream_unavailable"],
    [503, "upstream_unavailable"],
    [401, "upstream_auth"],
    [403, "upstream_auth"],
    [429, "upstream_rate_limited"],
    [400, "upstream_bad_request"],
    [404, "upstream_bad_request"],
    [409, "upstream_error"],
  ])("maps HTTP %i before the stream to %s", async (status, code) => {
    fixture.script({ status });
    const { chunks, error } = await run(provider());
    expect(chunks).toEqual([]);
    expectUpstreamError(error, code);
  });

  it("never repeats the upstream's error text, which for a 401 includes the key", async () => {
    fixture.script({ status: 401 });
    const { error } = await run(provider());
    expectUpstreamError(error, "upstream_auth");
    expect((error as Error).message).not.toMatch(/Incorrect API key/);
  });

  it("reports a connection cut mid-stream as upstream_disconnected, after the tokens received", async () => {
    fixture.script({ tokens: ["one", " two", " three", " four", " five"], cutAfter: 3 });
    const { tokens, error } = await run(provider());
    expect(tokens).toEqual(["one", " two", " three"]);
    expectUpstreamError(error, "upstream_disconnected");
  });

  it("reports a refused connection as upstream_unavailable", async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const { error } = await run(provider({ baseURL: `http://127.0.0.1:${port}/v1` }));
    expectUpstreamError(error, "upstream_unavailable");
  });

  it("stops promptly and quietly when the signal aborts during a hanging stream", async () => {
    fixture.script({ tokens: ["a", "b", "c", "d"], hangAfter: 2 });
    const controller = new AbortController();
    const started = Date.now();
    const { tokens, error } = await run(provider(), controller.signal, (_chunk, chunks) => {
      if (chunks.length === 2) setTimeout(() => controller.abort(), 20);
    });
    expect(controller.signal.aborted).toBe(true);
    expect(error).toBeUndefined();
    expect(tokens).toEqual(["a", "b"]);
    expect(Date.now() - started).toBeLessThan(LONG_TIMEOUT_MS / 2);
  });

  it("stops when the signal aborts before any response", async () => {
    fixture.script({ tokens: ["never"], hangAfter: 0 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const { chunks, error } = await run(provider(), controller.signal);
    expect(error).toBeUndefined();
    expect(chunks).toEqual([]);
  });

  it("yields nothing for an already-aborted signal", async () => {
    const before = fixture.requests.length;
    const { chunks, error } = await run(provider(), AbortSignal.abort());
    expect(error).toBeUndefined();
    expect(chunks).toEqual([]);
    expect(fixture.requests.length).toBe(before);
  });

  it("times out a stream that stalls mid-way", async () => {
    fixture.script({ tokens: ["a", "b", "c"], hangAfter: 1 });
    const { tokens, error } = await run(provider({ timeoutMs: 150 }));
    expect(tokens).toEqual(["a"]);
    expectUpstreamError(error, "upstream_timeout");
  });

  it("cancels the upstream request when the consumer stops early", async () => {
    fixture.script({ tokens: ["a", "b", "c"], hangAfter: 2 });
    const model = provider();
    const signal = new AbortController().signal;
    for await (const chunk of model.stream({ model: "gpt-test", messages: [], signal })) {
      expect(chunk).toEqual({ kind: "token", content: "a" });
      break;
    }
    // The next request still works: the abandoned one did not wedge the client.
    const { tokens } = await run(model);
    expect(tokens.join("")).toBe("Hello, world! Bye.");
  });
});
