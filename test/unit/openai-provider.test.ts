import http from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../../src/agent/openai-provider.js";
import {
  type ChatMessage,
  type ModelChunk,
  type ModelOptions,
  type ModelProvider,
  UpstreamError,
} from "../../src/agent/types.js";
import { reasoningSteps, refusalSteps, toolCallSteps } from "../fixtures/openai-scripts.js";
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
  request: { messages?: ChatMessage[]; options?: ModelOptions } = {},
): Promise<Outcome> {
  const chunks: ModelChunk[] = [];
  let error: unknown;
  try {
    for await (const chunk of model.stream({
      model: "gpt-test",
      messages: request.messages ?? [{ role: "user", content: "hi" }],
      ...(request.options ? { options: request.options } : {}),
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

  it("asks for a stream with usage, and caps output with max_completion_tokens only when configured", async () => {
    const before = fixture.requests.length;
    await run(provider());
    await run(provider({ maxOutputTokens: 64 }));
    await run(provider({ maxOutputTokens: 64 }), undefined, undefined, {
      options: { max_completion_tokens: 500 },
    });
    await run(provider({ maxOutputTokens: 64 }), undefined, undefined, {
      options: { max_completion_tokens: 9 },
    });
    await run(provider(), undefined, undefined, { options: { max_completion_tokens: 500 } });
    const [plain, capped, lowerCap, lowerAsk, asked] = fixture.requests.slice(before).map((r) => r.body);
    expect(plain).toMatchObject({ model: "gpt-test", stream: true, stream_options: { include_usage: true } });
    expect(plain).not.toHaveProperty("max_tokens");
    expect(plain).not.toHaveProperty("max_completion_tokens");
    expect(capped).toMatchObject({ max_completion_tokens: 64 });
    expect(capped).not.toHaveProperty("max_tokens");
    expect(lowerCap).toMatchObject({ max_completion_tokens: 64 });
    expect(lowerAsk).toMatchObject({ max_completion_tokens: 9 });
    expect(asked).toMatchObject({ max_completion_tokens: 500 });
    expect(fixture.requests.at(-1)?.headers.authorization).toBe(`Bearer ${API_KEY}`);
  });

  it("passes every request field to the upstream as given", async () => {
    const messages: ChatMessage[] = [
      { role: "developer", content: [{ type: "text", text: "be exact" }] },
      {
        role: "user",
        content: [
          { type: "text", text: "look" },
          { type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } },
          { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
          { type: "file", file: { file_id: "file-1", filename: "a.pdf" } },
        ],
        name: "ana",
      },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "lookup", arguments: '{"q":"x"}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "found" },
    ];
    const options: ModelOptions = {
      tools: [
        {
          type: "function",
          function: {
            name: "lookup",
            description: "Looks up",
            parameters: { type: "object", properties: { q: { type: "string" } }, required: ["q"] },
            strict: false,
          },
        },
      ],
      tool_choice: { type: "function", function: { name: "lookup" } },
      parallel_tool_calls: false,
      temperature: 0.2,
      top_p: 0.9,
      max_completion_tokens: 300,
      response_format: { type: "json_schema", json_schema: { name: "out", schema: { type: "object" } } },
      reasoning_effort: "low",
      seed: 7,
      stop: ["END", "STOP"],
    };
    const before = fixture.requests.length;
    const { error } = await run(provider(), undefined, undefined, { messages, options });
    expect(error).toBeUndefined();
    const body = fixture.requests[before]!.body as Record<string, unknown>;
    expect(body).toEqual({
      ...options,
      model: "gpt-test",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("streams one tool call as deltas, then the whole call, and finishes with tool_calls", async () => {
    const usage = {
      prompt_tokens: 40,
      completion_tokens: 18,
      total_tokens: 58,
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
      prompt_tokens_details: { cached_tokens: 32, audio_tokens: 0 },
    };
    fixture.script({
      steps: toolCallSteps([{ id: "call_A", name: "get_weather", args: ['{"ci', 'ty":"Pa', 'ris"}'] }]),
      finishReason: "tool_calls",
      usage,
    });
    const { chunks, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(chunks).toEqual([
      { kind: "tool_call_delta", index: 0, id: "call_A", name: "get_weather", arguments: "" },
      { kind: "tool_call_delta", index: 0, arguments: '{"ci' },
      { kind: "tool_call_delta", index: 0, arguments: 'ty":"Pa' },
      { kind: "tool_call_delta", index: 0, arguments: 'ris"}' },
      { kind: "tool_call", index: 0, id: "call_A", name: "get_weather", arguments: '{"city":"Paris"}' },
      {
        kind: "usage",
        usage: {
          prompt_tokens: 40,
          completion_tokens: 18,
          total_tokens: 58,
          reasoning_tokens: 0,
          cached_tokens: 32,
        },
      },
      { kind: "finish", reason: "tool_calls" },
    ]);
  });

  it("completes each of two parallel calls when the next one starts, and the last at the finish", async () => {
    fixture.script({
      steps: toolCallSteps([
        { id: "call_1", name: "get_weather", args: ['{"city":', '"Paris"}'] },
        { id: "call_2", name: "get_time", args: ['{"tz":"Europe/', 'Paris"}'] },
      ]),
      finishReason: "tool_calls",
    });
    const { chunks } = await run(provider());
    const kinds = chunks.map((chunk) =>
      chunk.kind === "tool_call" || chunk.kind === "tool_call_delta"
        ? `${chunk.kind}:${chunk.index}`
        : chunk.kind,
    );
    expect(kinds).toEqual([
      "tool_call_delta:0",
      "tool_call_delta:0",
      "tool_call_delta:0",
      "tool_call:0",
      "tool_call_delta:1",
      "tool_call_delta:1",
      "tool_call_delta:1",
      "tool_call:1",
      "usage",
      "finish",
    ]);
    expect(chunks.filter((chunk) => chunk.kind === "tool_call")).toEqual([
      { kind: "tool_call", index: 0, id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
      { kind: "tool_call", index: 1, id: "call_2", name: "get_time", arguments: '{"tz":"Europe/Paris"}' },
    ]);
  });

  it.each(["reasoning_content", "reasoning"] as const)(
    "reads %s as reasoning, apart from the answer",
    async (field) => {
      fixture.script({ steps: reasoningSteps(["Let", " me think", "…\n"], ["The", " answer."], field) });
      const { chunks } = await run(provider());
      expect(chunks.slice(0, -2)).toEqual([
        { kind: "reasoning", content: "Let" },
        { kind: "reasoning", content: " me think" },
        { kind: "reasoning", content: "…\n" },
        { kind: "token", content: "The" },
        { kind: "token", content: " answer." },
      ]);
    },
  );

  it("streams a refusal as refusal chunks, never as an empty answer", async () => {
    fixture.script({ steps: refusalSteps(["I'm sorry,", " I can't help with that."]) });
    const { chunks } = await run(provider());
    expect(chunks.slice(0, -2)).toEqual([
      { kind: "refusal", content: "I'm sorry," },
      { kind: "refusal", content: " I can't help with that." },
    ]);
    expect(chunks.at(-1)).toEqual({ kind: "finish", reason: "stop" });
  });

  it("a server that interleaves calls, or sends no id: each call is whole at the end, with an id", async () => {
    const part = (index: number, fn: Record<string, string>, id?: string) => ({
      delta: { tool_calls: [{ index, ...(id ? { id, type: "function" } : {}), function: fn }] },
    });
    fixture.script({
      steps: [
        { delta: { role: "assistant", content: null } },
        part(0, { name: "a", arguments: "{" }, "call_a"),
        part(1, { name: "b", arguments: "[" }),
        part(0, { arguments: "}" }),
        part(1, { arguments: "]" }),
      ],
      finishReason: "tool_calls",
    });
    const { chunks } = await run(provider());
    const calls = chunks.filter((chunk) => chunk.kind === "tool_call");
    // Call 0 looked complete when call 1 started; its later delta makes it whole again at the end.
    expect(calls).toEqual([
      { kind: "tool_call", index: 0, id: "call_a", name: "a", arguments: "{" },
      { kind: "tool_call", index: 0, id: "call_a", name: "a", arguments: "{}" },
      { kind: "tool_call", index: 1, id: "call_1", name: "b", arguments: "[]" },
    ]);
  });

  it("reads only choice 0: other choices never interleave into the answer", async () => {
    const both = (a: string, b: string) => ({
      choices: [
        { index: 1, delta: { content: b }, logprobs: null, finish_reason: null },
        { index: 0, delta: { content: a }, logprobs: null, finish_reason: null },
      ],
    });
    fixture.script({ steps: [both("one", "ONE"), both(" two", " TWO")] });
    const { tokens } = await run(provider());
    expect(tokens).toEqual(["one", " two"]);
  });

  it.each([
    [
      "choice 1 finishes last",
      [{ tokens: ["A", "B"] }, { tokens: ["x", "y", "z"], finishReason: "length" }],
      "stop",
    ],
    [
      "choice 1 finishes first",
      [{ tokens: ["A", "B"], finishReason: "length" }, { tokens: ["x"] }],
      "length",
    ],
  ])(
    "n > 1 with a finish chunk per choice (%s): choice 0's tokens and finish reason only",
    async (_what, choices, finish) => {
      const usage = { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 };
      fixture.script({ choices, usage });
      const { chunks, error } = await run(provider());
      expect(error).toBeUndefined();
      expect(chunks).toEqual([
        { kind: "token", content: "A" },
        { kind: "token", content: "B" },
        { kind: "usage", usage },
        { kind: "finish", reason: finish },
      ]);
    },
  );

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
    let tokensTaken = () => {};
    const cutWhen = new Promise<void>((resolve) => {
      tokensTaken = resolve;
    });
    fixture.script({ tokens: ["one", " two", " three", " four", " five"], cutAfter: 3, cutWhen });
    const { tokens, error } = await run(provider(), undefined, (_chunk, chunks) => {
      if (chunks.filter((chunk) => chunk.kind === "token").length === 3) tokensTaken();
    });
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
