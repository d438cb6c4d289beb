/**
 * Agent streams in full against the Responses API (OPENAI_API=responses), through the REAL `openai` SDK
 * and the fixture's real event stream, on two gateways sharing one Redis: every case of the chat path
 * (agent-events.test.ts) read on the other instance, each event's data compared exactly; the request
 * as the Responses API names its fields; failures with the chat path's safe codes; readers behind.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ResponsesPlan, responsesEvents, type ScriptedCall } from "../fixtures/openai-scripts.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  type AgentPair,
  assemble,
  expectFoldedDeltasOfOneCall,
  frame,
  histogramCounts,
  type Json,
  parseSse,
  roundTrip,
  sessionFrames,
  startAgentPair,
  startRun,
  WEATHER,
} from "../helpers/agent-pair.js";
import { collectUntilClosed, postJson, type SseEvent } from "../helpers/index.js";

const RESPONSES = { OPENAI_API: "responses" };

const USAGE = {
  input_tokens: 50,
  output_tokens: 30,
  total_tokens: 80,
  input_tokens_details: { cached_tokens: 16 },
  output_tokens_details: { reasoning_tokens: 20 },
};
const USAGE_EVENT = {
  prompt_tokens: 50,
  completion_tokens: 30,
  total_tokens: 80,
  reasoning_tokens: 20,
  cached_tokens: 16,
};
/** WEATHER as the Responses API takes it. */
const WEATHER_TOOL = {
  type: "function",
  name: "get_weather",
  description: WEATHER.function.description,
  parameters: WEATHER.function.parameters,
  strict: false,
};

describe("Responses API upstream (OPENAI_API=responses), read on another instance", () => {
  let fixture: OpenAIFixture;
  let pair: AgentPair;
  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    pair = await startAgentPair(fixture, RESPONSES);
  });
  afterAll(async () => {
    await pair?.close();
    await fixture?.close();
  });

  it("reasoning summaries and a function call map onto the chat path's events", async () => {
    fixture.script({
      events: responsesEvents({
        reasoning: [["**Weather**", "\n\nLook it up."]],
        calls: [{ id: "call_X", name: "get_weather", args: ['{"city"', ':"Kyiv 🌧"}'] }],
        usage: USAGE,
      }),
    });
    const before = fixture.requests.length;
    const { id, frames } = await roundTrip(pair.writer, pair.reader, {
      message: "Kyiv?",
      tools: [WEATHER],
      reasoning_effort: "medium",
      max_completion_tokens: 500,
    });
    expect(frames).toEqual([
      frame("reasoning", { content: "**Weather**" }),
      frame("reasoning", { content: "\n\nLook it up." }),
      frame("tool_call_delta", { index: 0, id: "call_X", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 0, arguments: '{"city"' }),
      frame("tool_call_delta", { index: 0, arguments: ':"Kyiv 🌧"}' }),
      frame("tool_call", { index: 0, id: "call_X", name: "get_weather", arguments: '{"city":"Kyiv 🌧"}' }),
      frame("usage", USAGE_EVENT),
      frame("done", { session_id: id, total_tokens: 80, finish_reason: "tool_calls" }),
    ]);
    expect(fixture.requests[before]!.path).toBe("/v1/responses");
  });

  it("two parallel function calls: never mixed, each complete before the next starts", async () => {
    fixture.script({
      events: responsesEvents({
        calls: [
          { id: "call_1", name: "get_weather", args: ['{"city":', '"Paris"}'] },
          { id: "call_2", name: "get_weather", args: ['{"city":', '"Oslo"}'] },
        ],
        usage: USAGE,
      }),
    });
    const { id, frames } = await roundTrip(pair.writer, pair.reader, {
      message: "Paris and Oslo?",
      tools: [WEATHER],
      parallel_tool_calls: true,
    });
    expect(frames).toEqual([
      frame("tool_call_delta", { index: 0, id: "call_1", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 0, arguments: '{"city":' }),
      frame("tool_call_delta", { index: 0, arguments: '"Paris"}' }),
      frame("tool_call", { index: 0, id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }),
      frame("tool_call_delta", { index: 1, id: "call_2", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 1, arguments: '{"city":' }),
      frame("tool_call_delta", { index: 1, arguments: '"Oslo"}' }),
      frame("tool_call", { index: 1, id: "call_2", name: "get_weather", arguments: '{"city":"Oslo"}' }),
      frame("usage", USAGE_EVENT),
      frame("done", { session_id: id, total_tokens: 80, finish_reason: "tool_calls" }),
    ]);
  });

  it("a tool round trip: the call, the caller runs it, the next run (on the other instance) sends its result", async () => {
    fixture.script({
      events: responsesEvents({ calls: [{ id: "call_R", name: "get_weather", args: ['{"city":"Lima"}'] }] }),
    });
    const first = await roundTrip(pair.writer, pair.reader, {
      message: "Weather in Lima?",
      tools: [WEATHER],
    });
    const call = JSON.parse(first.frames.find(([type]) => type === "tool_call")![1]) as Json;
    expect(call).toEqual({ index: 0, id: "call_R", name: "get_weather", arguments: '{"city":"Lima"}' });
    // The caller runs the tool (the gateway never does) and starts the next run with its result.
    const result = JSON.stringify({ city: "Lima", temp_c: 19 });
    const history = [
      { role: "user", content: "Weather in Lima?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } },
        ],
      },
      { role: "tool", tool_call_id: call.id, content: result },
    ];
    const answer = ["It is", " 19 °C", " in Lima."];
    fixture.script({ events: responsesEvents({ text: answer, usage: USAGE }) });
    const before = fixture.requests.length;
    const second = await roundTrip(pair.reader, pair.writer, { messages: history, tools: [WEATHER] });
    expect(fixture.requests[before]!.body).toEqual({
      model: "gpt-test",
      input: [
        { role: "user", content: "Weather in Lima?" },
        { type: "function_call", call_id: "call_R", name: "get_weather", arguments: '{"city":"Lima"}' },
        { type: "function_call_output", call_id: "call_R", output: result },
      ],
      tools: [WEATHER_TOOL],
      stream: true,
      store: false,
    });
    expect(second.frames).toEqual([
      ...answer.map((content) => frame("token", { content })),
      frame("usage", USAGE_EVENT),
      frame("done", { session_id: second.id, total_tokens: 80, finish_reason: "stop" }),
    ]);
  });

  it("passes every field to the upstream as sent, in the Responses API's names where they differ", async () => {
    const body = {
      messages: [
        { role: "developer", content: "Answer in JSON." },
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this image?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=", detail: "high" } },
            { type: "file", file: { filename: "a.txt", file_data: "data:text/plain;base64,aGk=" } },
          ],
        },
        {
          role: "assistant",
          content: "Checking the weather.",
          tool_calls: [
            {
              id: "call_P",
              type: "function",
              function: { name: "get_weather", arguments: '{"city":"Rome"}' },
            },
          ],
        },
        { role: "tool", tool_call_id: "call_P", content: [{ type: "text", text: "22 °C" }] },
      ],
      instructions: "Be brief.",
      model: "gpt-other",
      tools: [{ ...WEATHER, function: { ...WEATHER.function, strict: true } }],
      tool_choice: { type: "function", function: { name: "get_weather" } },
      parallel_tool_calls: false,
      temperature: 0,
      top_p: 0.5,
      max_completion_tokens: 256,
      response_format: {
        type: "json_schema",
        json_schema: { name: "answer", description: "The answer", schema: { type: "object" }, strict: true },
      },
      reasoning_effort: "minimal",
    };
    fixture.script({ events: responsesEvents({ text: ["{}"] }) });
    const before = fixture.requests.length;
    await roundTrip(pair.writer, pair.reader, body);
    expect(fixture.requests[before]!.body).toEqual({
      model: "gpt-other",
      // `instructions` is the first message, as on the chat path; messages are input items.
      input: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: "Answer in JSON." },
        {
          role: "user",
          content: [
            { type: "input_text", text: "What is in this image?" },
            { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=", detail: "high" },
            { type: "input_file", filename: "a.txt", file_data: "data:text/plain;base64,aGk=" },
          ],
        },
        { role: "assistant", content: "Checking the weather." },
        { type: "function_call", call_id: "call_P", name: "get_weather", arguments: '{"city":"Rome"}' },
        { type: "function_call_output", call_id: "call_P", output: [{ type: "input_text", text: "22 °C" }] },
      ],
      tools: [{ ...WEATHER_TOOL, strict: true }],
      tool_choice: { type: "function", name: "get_weather" },
      parallel_tool_calls: false,
      temperature: 0,
      top_p: 0.5,
      max_output_tokens: 256,
      reasoning: { effort: "minimal" },
      text: {
        format: {
          type: "json_schema",
          name: "answer",
          description: "The answer",
          schema: { type: "object" },
          strict: true,
        },
      },
      stream: true,
      store: false,
    });
  });

  it("maps the other shapes of tool_choice, response_format and tools as the Responses API names them", async () => {
    const cases: Array<[Json, Json]> = [
      [
        {
          tools: [WEATHER, { type: "function", function: { name: "now" } }],
          tool_choice: {
            type: "allowed_tools",
            allowed_tools: { mode: "required", tools: [{ type: "function", function: { name: "now" } }] },
          },
          response_format: { type: "json_object" },
          temperature: null,
          top_p: null,
        },
        {
          tools: [WEATHER_TOOL, { type: "function", name: "now", parameters: null, strict: false }],
          tool_choice: {
            type: "allowed_tools",
            mode: "required",
            tools: [{ type: "function", name: "now" }],
          },
          text: { format: { type: "json_object" } },
          temperature: null,
          top_p: null,
        },
      ],
      [
        {
          tools: [WEATHER],
          tool_choice: "none",
          response_format: { type: "text" },
          reasoning_effort: "high",
        },
        {
          tools: [WEATHER_TOOL],
          tool_choice: "none",
          text: { format: { type: "text" } },
          reasoning: { effort: "high" },
        },
      ],
    ];
    for (const [fields, mapped] of cases) {
      fixture.script({ events: responsesEvents({ text: ["ok"] }) });
      const before = fixture.requests.length;
      await roundTrip(pair.writer, pair.reader, { message: "x", ...fields });
      expect(fixture.requests[before]!.body).toEqual({
        model: "gpt-test",
        input: [{ role: "user", content: "x" }],
        ...mapped,
        stream: true,
        store: false,
      });
    }
  });

  it.each([
    ["an unknown field", { message: "x", foo: 1 }, "body.foo: unknown field"],
    ["n", { message: "x", n: 2 }, "body.n: unknown field"],
    ["max_tokens", { message: "x", max_tokens: 5 }, "body.max_tokens: unknown field"],
    ["max_output_tokens", { message: "x", max_output_tokens: 5 }, "body.max_output_tokens: unknown field"],
    [
      "an unknown field of a tool",
      { message: "x", tools: [{ ...WEATHER, extra: true }] },
      "body.tools.0.extra",
    ],
    [
      "tool_choice naming no tool",
      { message: "x", tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } },
      "body.tool_choice.function.name",
    ],
    ["seed", { message: "x", seed: 1 }, "body.seed: the Responses API"],
    ["stop", { message: "x", stop: "END" }, "body.stop: the Responses API"],
    [
      "a participant name",
      { messages: [{ role: "user", content: "x", name: "ana" }] },
      "body.messages.0.name: the Responses API",
    ],
    [
      "an input_audio part",
      {
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "listen" },
              { type: "input_audio", input_audio: { data: "AAAA", format: "mp3" } },
            ],
          },
        ],
      },
      "body.messages.0.content.1: the Responses API",
    ],
  ])("%s is 400 naming it, on both routes, and starts nothing", async (_what, body, field) => {
    const before = fixture.requests.length;
    for (const path of ["/api/v1/sessions", "/api/v1/agent/stream"]) {
      const res = await postJson(`${pair.writer.url}${path}`, body);
      expect(res.status, res.text).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(res.body.error.message).toContain(field);
    }
    expect(fixture.requests.length).toBe(before);
  });

  it("text, and a refusal that ends as refusal events then done", async () => {
    fixture.script({ events: responsesEvents({ text: ["Hi", " there"] }) });
    const text = await roundTrip(pair.writer, pair.reader, { message: "hi" });
    expect(text.frames).toEqual([
      frame("token", { content: "Hi" }),
      frame("token", { content: " there" }),
      frame("done", { session_id: text.id, total_tokens: 2, finish_reason: "stop" }),
    ]);
    const parts = ["I'm sorry,", " but I can't help with that."];
    const usage = { ...USAGE, output_tokens: 9, total_tokens: 59 };
    fixture.script({ events: responsesEvents({ refusal: parts, usage }) });
    const refused = await roundTrip(pair.writer, pair.reader, { message: "something bad" });
    expect(refused.frames).toEqual([
      ...parts.map((content) => frame("refusal", { content })),
      frame("usage", { ...USAGE_EVENT, completion_tokens: 9, total_tokens: 59 }),
      frame("done", { session_id: refused.id, total_tokens: 59, finish_reason: "stop" }),
    ]);
  });

  it("an incomplete response: finish_reason length (max_output_tokens) or content_filter", async () => {
    for (const [reason, finishReason] of [
      ["max_output_tokens", "length"],
      ["content_filter", "content_filter"],
    ] as const) {
      fixture.script({
        events: responsesEvents({ text: ["cut"], end: "incomplete", incompleteReason: reason, usage: USAGE }),
      });
      const { id, frames } = await roundTrip(pair.writer, pair.reader, { message: "go" });
      expect(frames).toEqual([
        frame("token", { content: "cut" }),
        frame("usage", USAGE_EVENT),
        frame("done", { session_id: id, total_tokens: 80, finish_reason: finishReason }),
      ]);
    }
  });

  it("a failed response ends with the chat path's safe code", async () => {
    fixture.script({ events: responsesEvents({ text: ["par"], end: "failed" }) });
    const { frames } = await roundTrip(pair.writer, pair.reader, { message: "x" });
    expect(frames).toEqual([
      frame("token", { content: "par" }),
      frame("error", { code: "upstream_unavailable", message: "The model provider is unavailable." }),
    ]);
  });

  it("an error event ends with the safe code and message the chat path gives a rate limit", async () => {
    fixture.script({ events: responsesEvents({ text: ["par"], end: "error" }) });
    const { frames } = await roundTrip(pair.writer, pair.reader, { message: "x" });
    const chat = await startAgentPair(fixture);
    try {
      fixture.script({ status: 429 });
      const chatRun = await roundTrip(chat.writer, chat.reader, { message: "x" });
      const chatError = chatRun.frames.at(-1)!;
      expect(chatError).toEqual(
        frame("error", {
          code: "upstream_rate_limited",
          message: "The model provider is rate limiting requests; try again shortly.",
        }),
      );
      expect(frames).toEqual([frame("token", { content: "par" }), chatError]);
    } finally {
      await chat.close();
    }
    expect(frames.join("")).not.toContain("secret");
  });

  it("POST /api/v1/agent/stream streams the events as the other instance reads them", async () => {
    fixture.script({
      events: responsesEvents({
        reasoning: [["Rome: look it up."]],
        calls: [{ id: "call_S", name: "get_weather", args: ['{"city":', '"Rome"}'] }],
        usage: USAGE,
      }),
    });
    const before = fixture.requests.length;
    const res = await fetch(`${pair.writer.url}/api/v1/agent/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({
        messages: [{ role: "user", content: "Rome?" }],
        tools: [WEATHER],
        tool_choice: "required",
        temperature: 0.3,
      }),
    });
    expect(res.status).toBe(200);
    const id = res.headers.get("x-session-id")!;
    const frames = parseSse(await res.text());
    expect(frames[0]![0]).toBe("start");
    expect(frames.slice(1)).toEqual([
      frame("reasoning", { content: "Rome: look it up." }),
      frame("tool_call_delta", { index: 0, id: "call_S", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 0, arguments: '{"city":' }),
      frame("tool_call_delta", { index: 0, arguments: '"Rome"}' }),
      frame("tool_call", { index: 0, id: "call_S", name: "get_weather", arguments: '{"city":"Rome"}' }),
      frame("usage", USAGE_EVENT),
      frame("done", { session_id: id, total_tokens: 80, finish_reason: "tool_calls" }),
    ]);
    const other = await collectUntilClosed(`${pair.reader.url}/api/v1/sessions/${id}/stream`);
    expect(other.events.map((e) => [e.event, e.data])).toEqual(frames);
    expect(fixture.requests[before]!.body).toEqual({
      model: "gpt-test",
      input: [{ role: "user", content: "Rome?" }],
      tools: [WEATHER_TOOL],
      tool_choice: "required",
      temperature: 0.3,
      stream: true,
      store: false,
    });
  });

  it("a multiplexed stream carries the run's events byte for byte as a single-session stream", async () => {
    fixture.script({
      events: responsesEvents({
        reasoning: [["Two", ' cities "quoted"'], ["é🎉"]],
        text: ["Checking", "\r\n", " both."],
        calls: [
          { id: "call_m1", name: "get_weather", args: ['{"city":', '"Paris"}'] },
          { id: "call_m2", name: "get_weather", args: ['{"city":"Oslo"}'] },
        ],
        usage: USAGE,
      }),
    });
    const id = await startRun(pair.writer, { message: "Paris and Oslo?", tools: [WEATHER] });
    const mux = await collectUntilClosed(`${pair.reader.url}/api/v1/stream?sessions=${id}`);
    const single = await collectUntilClosed(`${pair.reader.url}/api/v1/sessions/${id}/stream`);
    const frames = sessionFrames(mux.events, id);
    expect(frames).toEqual(single.events.map((e) => [e.event, e.data]));
    expect(frames.slice(1, 6)).toEqual([
      frame("reasoning", { content: "Two" }),
      frame("reasoning", { content: ' cities "quoted"' }),
      frame("reasoning", { content: "\n\né🎉" }),
      frame("token", { content: "Checking" }),
      frame("token", { content: "\r\n" }),
    ]);
    expect(frames.map(([type]) => type).slice(6)).toEqual([
      "token",
      ...["tool_call_delta", "tool_call_delta", "tool_call_delta", "tool_call"],
      ...["tool_call_delta", "tool_call_delta", "tool_call"],
      "usage",
      "done",
    ]);
  });

  it("time to first token counts a tool call; time to first answer token waits for a token", async () => {
    const before = await histogramCounts(pair.writer);
    expect(Number.isInteger(before.firstOutput) && Number.isInteger(before.firstAnswer)).toBe(true);
    fixture.script({
      events: responsesEvents({ calls: [{ id: "call_M", name: "get_weather", args: ['{"city":"Bern"}'] }] }),
    });
    await roundTrip(pair.writer, pair.reader, { message: "Bern?", tools: [WEATHER] });
    const afterCall = await histogramCounts(pair.writer);
    expect(afterCall.firstOutput).toBe(before.firstOutput + 1);
    expect(afterCall.firstAnswer).toBe(before.firstAnswer);
    fixture.script({ events: responsesEvents({ reasoning: [["hm"]], text: ["Yes."] }) });
    await roundTrip(pair.writer, pair.reader, { message: "ok?" });
    const afterText = await histogramCounts(pair.writer);
    expect(afterText.firstOutput).toBe(before.firstOutput + 2);
    expect(afterText.firstAnswer).toBe(before.firstAnswer + 1);
    const metrics = await (await fetch(`${pair.writer.url}/metrics`)).text();
    for (const type of ["tool_call_delta", "tool_call", "reasoning"]) {
      expect(metrics).toMatch(new RegExp(`^sse_events_appended_total\\{type="${type}"\\} [1-9]`, "m"));
    }
  });
});

describe("Responses API upstream, readers behind on another instance", () => {
  const PARTS = [
    Array.from({ length: 15 }, (_, i) => (i % 7 === 0 ? ` step ${i} "é"\n` : ` r${i}`)),
    Array.from({ length: 15 }, (_, i) => ` s${i}`),
  ];
  const TEXT = Array.from({ length: 30 }, (_, i) => (i % 11 === 0 ? ` 🎉${i}` : ` t${i}`));
  const CALLS: ScriptedCall[] = [
    { id: "call_a", name: "lookup", args: ['{"q', '":"', "alpha", '"', "}"] },
    { id: "call_b", name: "fetch_page", args: ['{"url":', '"https://', "example.com/", '?x=1"}'] },
  ];
  const PLAN: ResponsesPlan = { reasoning: PARTS, text: TEXT, calls: CALLS, usage: USAGE };
  /** What a reader that never fell behind ends up with: summary parts apart by a blank line. */
  const EXPECTED = {
    reasoning: PARTS.map((part) => part.join("")).join("\n\n"),
    content: TEXT.join(""),
    calls: CALLS.map((call, index) => ({
      index,
      id: call.id,
      name: call.name,
      arguments: call.args.join(""),
    })),
  };
  const DELTAS = CALLS.reduce((sum, call) => sum + call.args.length + 1, 0);
  const REASONING_DELTAS = PARTS.flat().length;

  let fixture: OpenAIFixture;
  const pairs: AgentPair[] = [];
  beforeAll(async () => {
    fixture = await startOpenAIFixture();
  });
  afterEach(async () => {
    for (const pair of pairs.splice(0)) await pair.close();
  });
  afterAll(async () => {
    await fixture?.close();
  });

  /** A run that reasons, answers and calls two tools, read on the other instance once it has ended. */
  async function runAndReadLate(env: Record<string, string>): Promise<SseEvent[]> {
    const pair = await startAgentPair(fixture, { ...RESPONSES, ...env });
    pairs.push(pair);
    fixture.script({ events: responsesEvents(PLAN) });
    const id = await startRun(pair.writer, {
      message: "go",
      tools: CALLS.map((call) => ({ type: "function", function: { name: call.name } })),
    });
    // The run's own stream on its instance ends with it; the late reader comes after.
    await collectUntilClosed(`${pair.writer.url}/api/v1/sessions/${id}/stream`);
    return (await collectUntilClosed(`${pair.reader.url}/api/v1/sessions/${id}/stream`)).events;
  }

  it("a compacted session's snapshot restores reasoning and tool calls as well as the text", async () => {
    const events = await runAndReadLate({ MAX_EVENTS_PER_SESSION: "10" });
    expect(events[0]!.event).toBe("snapshot");
    const snapshot = JSON.parse(events[0]!.data) as Json;
    expect(snapshot.reasoning).toBe(EXPECTED.reasoning);
    expect((snapshot.folded as Json).reasoning).toBe(REASONING_DELTAS);
    expect(events.length).toBeLessThanOrEqual(11);
    expect(assemble(events)).toEqual(EXPECTED);
    expect(events.slice(-2).map((e) => [e.event, JSON.parse(e.data).finish_reason])).toEqual([
      ["usage", undefined],
      ["done", "tool_calls"],
    ]);
  });

  it("a catch-up folds reasoning runs and one call's deltas, never two calls' deltas together", async () => {
    const events = await runAndReadLate({ CATCH_UP_BATCH: "8" });
    expect(assemble(events)).toEqual(EXPECTED);
    expect(events.filter((e) => e.event === "reasoning").length).toBeLessThan(REASONING_DELTAS);
    expect(events.filter((e) => e.event === "tool_call_delta").length).toBeLessThan(DELTAS);
    expectFoldedDeltasOfOneCall(
      events.map((e) => [e.event, e.data]),
      EXPECTED,
    );
  });
});
