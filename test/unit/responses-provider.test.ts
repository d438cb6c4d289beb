/**
 * The Responses API upstream (`api: "responses"`) through the REAL `openai` SDK against the fixture's
 * `/v1/responses`: its events map onto the same model chunks as Chat Completions, the request maps
 * onto the Responses API's fields, and failures end with the same safe codes.
 */
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
import { responsesEvents } from "../fixtures/openai-scripts.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";

const API_KEY = "sk-test-SECRET-key-responses";

let fixture: OpenAIFixture;
beforeAll(async () => {
  fixture = await startOpenAIFixture();
});
afterAll(async () => {
  await fixture.close();
});

function provider(maxOutputTokens?: number): ModelProvider {
  const client = new OpenAI({ apiKey: API_KEY, baseURL: fixture.url, maxRetries: 0 });
  return createOpenAIProvider({
    client,
    api: "responses",
    timeoutMs: 60_000,
    ...(maxOutputTokens === undefined ? {} : { maxOutputTokens }),
  });
}

async function run(
  model: ModelProvider,
  request: { messages?: ChatMessage[]; options?: ModelOptions } = {},
  onChunk?: (chunks: ModelChunk[]) => void,
): Promise<{ chunks: ModelChunk[]; error: unknown }> {
  const chunks: ModelChunk[] = [];
  let error: unknown;
  try {
    for await (const chunk of model.stream({
      model: "gpt-test",
      messages: request.messages ?? [{ role: "user", content: "hi" }],
      ...(request.options ? { options: request.options } : {}),
      signal: new AbortController().signal,
    })) {
      chunks.push(chunk);
      onChunk?.(chunks);
    }
  } catch (caught) {
    error = caught;
  }
  return { chunks, error };
}

const usage = {
  input_tokens: 120,
  output_tokens: 80,
  total_tokens: 200,
  input_tokens_details: { cached_tokens: 64 },
  output_tokens_details: { reasoning_tokens: 48 },
};

describe("the Responses API upstream", () => {
  it("maps reasoning summaries, text and usage onto the chat path's chunks", async () => {
    fixture.script({
      events: responsesEvents({
        reasoning: [
          ["**Plan**", "\n\nCheck the", " cache."],
          ["Then", " answer."],
        ],
        text: ["Hel", "lo ", "🎉", "\n"],
        usage,
      }),
    });
    const before = fixture.requests.length;
    const { chunks, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(fixture.requests[before]!.path).toBe("/v1/responses");
    expect(chunks).toEqual([
      { kind: "reasoning", content: "**Plan**" },
      { kind: "reasoning", content: "\n\nCheck the" },
      { kind: "reasoning", content: " cache." },
      // A second summary part starts with a blank line, so the parts do not run together.
      { kind: "reasoning", content: "\n\nThen" },
      { kind: "reasoning", content: " answer." },
      { kind: "token", content: "Hel" },
      { kind: "token", content: "lo " },
      { kind: "token", content: "🎉" },
      { kind: "token", content: "\n" },
      {
        kind: "usage",
        usage: {
          prompt_tokens: 120,
          completion_tokens: 80,
          total_tokens: 200,
          reasoning_tokens: 48,
          cached_tokens: 64,
        },
      },
      { kind: "finish", reason: "stop" },
    ]);
  });

  it("maps function calls: deltas as they stream, each call once complete, finish tool_calls", async () => {
    fixture.script({
      events: responsesEvents({
        reasoning: [["Two lookups."]],
        calls: [
          { id: "call_w", name: "get_weather", args: ['{"city"', ':"Paris"}'] },
          { id: "call_t", name: "get_time", args: ['{"tz":"UTC"}'] },
        ],
        usage,
      }),
    });
    const { chunks, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(chunks.filter((chunk) => chunk.kind !== "usage")).toEqual([
      { kind: "reasoning", content: "Two lookups." },
      { kind: "tool_call_delta", index: 0, id: "call_w", name: "get_weather", arguments: "" },
      { kind: "tool_call_delta", index: 0, arguments: '{"city"' },
      { kind: "tool_call_delta", index: 0, arguments: ':"Paris"}' },
      { kind: "tool_call", index: 0, id: "call_w", name: "get_weather", arguments: '{"city":"Paris"}' },
      { kind: "tool_call_delta", index: 1, id: "call_t", name: "get_time", arguments: "" },
      { kind: "tool_call_delta", index: 1, arguments: '{"tz":"UTC"}' },
      { kind: "tool_call", index: 1, id: "call_t", name: "get_time", arguments: '{"tz":"UTC"}' },
      { kind: "finish", reason: "tool_calls" },
    ]);
  });

  it("maps a refusal onto refusal chunks", async () => {
    fixture.script({ events: responsesEvents({ refusal: ["I can't", " help with that."] }) });
    const { chunks } = await run(provider());
    expect(chunks).toEqual([
      { kind: "refusal", content: "I can't" },
      { kind: "refusal", content: " help with that." },
      { kind: "finish", reason: "stop" },
    ]);
  });

  it("maps raw reasoning text (response.reasoning_text.delta) like summaries, parts apart by a blank line", async () => {
    fixture.script({
      events: responsesEvents({
        reasoningText: [
          ["The user", ' wants "x".'],
          ["é🎉", "\n"],
        ],
        text: ["Hi"],
      }),
    });
    const { chunks, error } = await run(provider());
    expect(error).toBeUndefined();
    expect(chunks).toEqual([
      { kind: "reasoning", content: "The user" },
      { kind: "reasoning", content: ' wants "x".' },
      { kind: "reasoning", content: "\n\né🎉" },
      { kind: "reasoning", content: "\n" },
      { kind: "token", content: "Hi" },
      { kind: "finish", reason: "stop" },
    ]);
  });

  it("a summary and raw reasoning text of one item follow each other as separate parts", async () => {
    fixture.script({ events: responsesEvents({ reasoning: [["Sum", "mary"]], reasoningText: [["Raw"]] }) });
    const { chunks } = await run(provider());
    expect(chunks).toEqual([
      { kind: "reasoning", content: "Sum" },
      { kind: "reasoning", content: "mary" },
      { kind: "reasoning", content: "\n\nRaw" },
      { kind: "finish", reason: "stop" },
    ]);
  });

  it.each([
    ["max_output_tokens", "length"],
    ["content_filter", "content_filter"],
  ] as const)(
    "ends an incomplete response (%s) with finish_reason %s, after its usage",
    async (reason, finish) => {
      fixture.script({
        events: responsesEvents({ text: ["cut"], end: "incomplete", incompleteReason: reason, usage }),
      });
      const { chunks, error } = await run(provider());
      expect(error).toBeUndefined();
      expect(chunks).toEqual([
        { kind: "token", content: "cut" },
        {
          kind: "usage",
          usage: {
            prompt_tokens: 120,
            completion_tokens: 80,
            total_tokens: 200,
            reasoning_tokens: 48,
            cached_tokens: 64,
          },
        },
        { kind: "finish", reason: finish },
      ]);
    },
  );

  it.each([
    ["failed", "upstream_unavailable"],
    ["error", "upstream_rate_limited"],
    ["none", "upstream_disconnected"],
  ] as const)("a response that ends %s fails with %s, leaking nothing", async (end, code) => {
    fixture.script({ events: responsesEvents({ text: ["partial"], end }) });
    const { chunks, error } = await run(provider());
    expect(chunks).toEqual([{ kind: "token", content: "partial" }]);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).code).toBe(code);
    expect((error as Error).message).not.toContain("secret");
  });

  it("a connection cut mid-stream is upstream_disconnected", async () => {
    const events = responsesEvents({ text: ["a", "b", "c"] });
    let tokensTaken = () => {};
    const cutWhen = new Promise<void>((resolve) => {
      tokensTaken = resolve;
    });
    fixture.script({
      events,
      cutAfter: events.findIndex((e) => e.type === "response.output_text.delta") + 2,
      cutWhen,
    });
    const { chunks, error } = await run(provider(), {}, (taken) => {
      if (taken.length === 2) tokensTaken();
    });
    expect(chunks).toEqual([
      { kind: "token", content: "a" },
      { kind: "token", content: "b" },
    ]);
    expect((error as UpstreamError).code).toBe("upstream_disconnected");
  });

  it("an HTTP error before the stream maps as on the chat path", async () => {
    fixture.script({ status: 429 });
    const { error } = await run(provider());
    expect((error as UpstreamError).code).toBe("upstream_rate_limited");
  });

  it("sends the request in the Responses API's terms", async () => {
    fixture.script({ events: responsesEvents({ text: ["ok"] }) });
    const messages: ChatMessage[] = [
      { role: "system", content: "be brief" },
      { role: "developer", content: [{ type: "text", text: "use tools" }] },
      {
        role: "user",
        content: [
          { type: "text", text: "weather?" },
          { type: "image_url", image_url: { url: "https://example.com/a.png" } },
          { type: "file", file: { file_id: "file-1" } },
        ],
      },
      {
        role: "assistant",
        content: "Looking.",
        tool_calls: [
          {
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: '{"temp":21}' },
    ];
    const options: ModelOptions = {
      tools: [
        {
          type: "function",
          function: {
            name: "get_weather",
            description: "Weather",
            parameters: { type: "object", properties: {} },
          },
        },
      ],
      tool_choice: { type: "function", function: { name: "get_weather" } },
      parallel_tool_calls: true,
      temperature: 0.5,
      top_p: 0.8,
      max_completion_tokens: 400,
      reasoning_effort: "high",
      response_format: {
        type: "json_schema",
        json_schema: { name: "weather", schema: { type: "object" }, strict: true },
      },
    };
    const before = fixture.requests.length;
    const { error } = await run(provider(100), { messages, options });
    expect(error).toBeUndefined();
    expect(fixture.requests[before]!.body).toEqual({
      model: "gpt-test",
      stream: true,
      store: false,
      input: [
        { role: "system", content: "be brief" },
        { role: "developer", content: [{ type: "input_text", text: "use tools" }] },
        {
          role: "user",
          content: [
            { type: "input_text", text: "weather?" },
            { type: "input_image", image_url: "https://example.com/a.png", detail: "auto" },
            { type: "input_file", file_id: "file-1" },
          ],
        },
        { role: "assistant", content: "Looking." },
        { type: "function_call", call_id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
        { type: "function_call_output", call_id: "call_1", output: '{"temp":21}' },
      ],
      tools: [
        {
          type: "function",
          name: "get_weather",
          description: "Weather",
          parameters: { type: "object", properties: {} },
          strict: false,
        },
      ],
      tool_choice: { type: "function", name: "get_weather" },
      parallel_tool_calls: true,
      temperature: 0.5,
      top_p: 0.8,
      // The operator's cap (MAX_OUTPUT_TOKENS) is lower than the request's.
      max_output_tokens: 100,
      reasoning: { effort: "high" },
      text: { format: { type: "json_schema", name: "weather", schema: { type: "object" }, strict: true } },
    });
  });

  it("says what it cannot send: seed, stop, participant names, audio input", () => {
    const model = provider();
    const user: ChatMessage = { role: "user", content: "hi" };
    expect(model.unsupported?.({ messages: [user] })).toBeNull();
    expect(model.unsupported?.({ messages: [user], options: { seed: 1 } })?.field).toBe("seed");
    expect(model.unsupported?.({ messages: [user], options: { stop: "x" } })?.field).toBe("stop");
    expect(model.unsupported?.({ messages: [{ ...user, name: "ana" }] })?.field).toBe("messages.0.name");
    const audio: ChatMessage = {
      role: "user",
      content: [
        { type: "text", text: "listen" },
        { type: "input_audio", input_audio: { data: "AAAA", format: "mp3" } },
      ],
    };
    expect(model.unsupported?.({ messages: [user, audio] })?.field).toBe("messages.1.content.1");
  });
});
