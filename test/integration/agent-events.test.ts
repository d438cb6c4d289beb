/**
 * Agent streams in full, through the REAL `openai` SDK against the fixture's real wire formats, on two
 * gateways sharing one Redis: a run started on one instance is read on the other, byte for byte
 * (tool-call deltas and calls, reasoning, refusals, usage details, other choices left out), on a
 * single-session and on a multiplexed stream alike, and a run's request reaches the upstream with every
 * field as sent. The Responses API's side is agent-events-responses.test.ts.
 */
import { EventSource } from "eventsource";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  connect,
  type FunctionTool,
  startSession,
  type ToolCallData,
  type UsageData,
} from "../../src/client/index.js";
import { reasoningSteps, refusalSteps, toolCallSteps } from "../fixtures/openai-scripts.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  type AgentPair,
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
import {
  collectUntilClosed,
  postJson,
  randomPrefix,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const USAGE = {
  prompt_tokens: 40,
  completion_tokens: 18,
  total_tokens: 58,
  completion_tokens_details: { reasoning_tokens: 12, audio_tokens: 0, accepted_prediction_tokens: 0 },
  prompt_tokens_details: { cached_tokens: 32, audio_tokens: 0 },
};
const USAGE_EVENT = {
  prompt_tokens: 40,
  completion_tokens: 18,
  total_tokens: 58,
  reasoning_tokens: 12,
  cached_tokens: 32,
};
describe("Chat Completions upstream, read on another instance", () => {
  let fixture: OpenAIFixture;
  let pair: AgentPair;
  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    pair = await startAgentPair(fixture);
  });
  afterAll(async () => {
    await pair?.close();
    await fixture?.close();
  });

  it("one tool call: its deltas as they stream, the whole call, usage details, done tool_calls", async () => {
    fixture.script({
      steps: toolCallSteps([{ id: "call_A", name: "get_weather", args: ['{"ci', 'ty":"Pa', 'ris 🌧"}'] }]),
      finishReason: "tool_calls",
      usage: USAGE,
      fragmentBytes: 5,
    });
    const { id, frames } = await roundTrip(pair.writer, pair.reader, {
      message: "weather?",
      tools: [WEATHER],
    });
    expect(frames).toEqual([
      frame("tool_call_delta", { index: 0, id: "call_A", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 0, arguments: '{"ci' }),
      frame("tool_call_delta", { index: 0, arguments: 'ty":"Pa' }),
      frame("tool_call_delta", { index: 0, arguments: 'ris 🌧"}' }),
      frame("tool_call", { index: 0, id: "call_A", name: "get_weather", arguments: '{"city":"Paris 🌧"}' }),
      frame("usage", USAGE_EVENT),
      frame("done", { session_id: id, total_tokens: 58, finish_reason: "tool_calls" }),
    ]);
  });

  it("time to first token counts a tool call; time to first answer token waits for a token", async () => {
    const before = await histogramCounts(pair.writer);
    expect(Number.isInteger(before.firstOutput) && Number.isInteger(before.firstAnswer)).toBe(true);
    fixture.script({
      steps: toolCallSteps([{ id: "call_M", name: "get_weather", args: ['{"city":"Bern"}'] }]),
      finishReason: "tool_calls",
    });
    await roundTrip(pair.writer, pair.reader, { message: "Bern?", tools: [WEATHER] });
    const afterCall = await histogramCounts(pair.writer);
    expect(afterCall.firstOutput).toBe(before.firstOutput + 1);
    expect(afterCall.firstAnswer).toBe(before.firstAnswer);
    fixture.script({ steps: reasoningSteps(["hm"], ["Yes."]) });
    await roundTrip(pair.writer, pair.reader, { message: "ok?" });
    const afterText = await histogramCounts(pair.writer);
    expect(afterText.firstOutput).toBe(before.firstOutput + 2);
    expect(afterText.firstAnswer).toBe(before.firstAnswer + 1);
    const metrics = await (await fetch(`${pair.writer.url}/metrics`)).text();
    for (const type of ["tool_call_delta", "tool_call", "reasoning"]) {
      expect(metrics).toMatch(new RegExp(`^sse_events_appended_total\\{type="${type}"\\} [1-9]`, "m"));
    }
  });

  it("two parallel calls: never mixed, each complete before the next starts", async () => {
    fixture.script({
      steps: toolCallSteps([
        { id: "call_1", name: "get_weather", args: ['{"city":', '"Paris"}'] },
        { id: "call_2", name: "get_weather", args: ['{"city":', '"Oslo"}'] },
      ]),
      finishReason: "tool_calls",
    });
    const { frames } = await roundTrip(pair.writer, pair.reader, {
      message: "Paris and Oslo?",
      tools: [WEATHER],
      parallel_tool_calls: true,
    });
    expect(frames.slice(0, 8)).toEqual([
      frame("tool_call_delta", { index: 0, id: "call_1", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 0, arguments: '{"city":' }),
      frame("tool_call_delta", { index: 0, arguments: '"Paris"}' }),
      frame("tool_call", { index: 0, id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }),
      frame("tool_call_delta", { index: 1, id: "call_2", name: "get_weather", arguments: "" }),
      frame("tool_call_delta", { index: 1, arguments: '{"city":' }),
      frame("tool_call_delta", { index: 1, arguments: '"Oslo"}' }),
      frame("tool_call", { index: 1, id: "call_2", name: "get_weather", arguments: '{"city":"Oslo"}' }),
    ]);
    expect(frames.map(([type]) => type).slice(8)).toEqual(["usage", "done"]);
    expect(JSON.parse(frames.at(-1)![1]).finish_reason).toBe("tool_calls");
  });

  it("reasoning_content, then the answer, apart; usage with reasoning and cached tokens", async () => {
    const reasoning = ["The user", ' wants a "word".', "\n\nPick one: é🎉"];
    const answer = ["Hello", "\r\n", " world"];
    fixture.script({ steps: reasoningSteps(reasoning, answer), usage: USAGE });
    const { id, frames } = await roundTrip(pair.writer, pair.reader, {
      message: "a word",
      reasoning_effort: "high",
    });
    expect(frames).toEqual([
      ...reasoning.map((content) => frame("reasoning", { content })),
      ...answer.map((content) => frame("token", { content })),
      frame("usage", USAGE_EVENT),
      frame("done", { session_id: id, total_tokens: 58, finish_reason: "stop" }),
    ]);
  });

  it("a refusal ends as refusal events then done, never as an empty done", async () => {
    const parts = ["I'm sorry,", " but I can't help with that."];
    fixture.script({
      steps: refusalSteps(parts),
      usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 },
    });
    const { id, frames } = await roundTrip(pair.writer, pair.reader, { message: "something bad" });
    expect(frames).toEqual([
      ...parts.map((content) => frame("refusal", { content })),
      frame("usage", { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 }),
      frame("done", { session_id: id, total_tokens: 18, finish_reason: "stop" }),
    ]);
  });

  it("n > 1 as OpenAI streams it: only choice 0 reaches the session, done has choice 0's finish reason", async () => {
    // Each choice streams in its own chunks and finishes in its own chunk, after its last delta; the
    // gateway never asks for n > 1, but an upstream that sends it anyway must not mix the choices.
    const cases = [
      {
        choices: [
          { tokens: ["Yes", ", from", " choice 0."] },
          { tokens: ["No", " — choice 1", " goes on", " longer."], finishReason: "length" },
        ],
        finish: "stop",
      },
      {
        choices: [
          { tokens: ["Choice 0", " is", " the long", " one."], finishReason: "length" },
          { tokens: ["Short."], finishReason: "stop" },
        ],
        finish: "length",
      },
    ];
    for (const { choices, finish } of cases) {
      fixture.script({ choices, usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 } });
      const { id, frames } = await roundTrip(pair.writer, pair.reader, { message: "two answers" });
      expect(frames).toEqual([
        ...choices[0]!.tokens.map((content) => frame("token", { content })),
        frame("usage", { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 }),
        frame("done", { session_id: id, total_tokens: 14, finish_reason: finish }),
      ]);
    }
  });

  it("a multiplexed stream carries each session's events byte for byte as a single-session stream", async () => {
    const calls = [
      { id: "call_m1", name: "get_weather", args: ['{"city":', '"Paris 🌧"}'] },
      { id: "call_m2", name: "get_weather", args: ['{"city":"Oslo"}'] },
    ];
    fixture.script({
      steps: [
        ...reasoningSteps(["Two", ' cities, "quoted"', "\n\nLook up é🎉"], ["Checking", "\r\n", " both."]),
        ...toolCallSteps(calls).map((step, i) =>
          // The first call's opening chunk goes on from the answer: no second role.
          i === 0 && "delta" in step ? { delta: { tool_calls: step.delta.tool_calls } } : step,
        ),
      ],
      finishReason: "tool_calls",
      usage: USAGE,
    });
    fixture.script({ steps: refusalSteps(["No,", " not that."]) });
    const first = await startRun(pair.writer, { message: "Paris and Oslo?", tools: [WEATHER] });
    const second = await startRun(pair.writer, { message: "something bad" });
    const mux = await collectUntilClosed(`${pair.reader.url}/api/v1/stream?sessions=${first},${second}`);
    for (const id of [first, second]) {
      const single = await collectUntilClosed(`${pair.reader.url}/api/v1/sessions/${id}/stream`);
      const frames = sessionFrames(mux.events, id);
      expect(frames).toEqual(single.events.map((e) => [e.event, e.data]));
      expect(frames.at(-1)![0]).toBe("done");
      // Every session event carries the connection's cursor.
      expect(mux.events.filter((e) => e.event.startsWith(`${id}:`)).every((e) => e.id)).toBe(true);
    }
    const types = sessionFrames(mux.events, first).map(([type]) => type);
    for (const type of ["reasoning", "token", "tool_call_delta", "tool_call", "usage"]) {
      expect(types).toContain(type);
    }
    expect(sessionFrames(mux.events, second).map(([type]) => type)).toEqual([
      "start",
      "refusal",
      "refusal",
      "usage",
      "done",
    ]);
  });

  it("the upstream's finish reason is done's (length, content_filter)", async () => {
    for (const finishReason of ["length", "content_filter"]) {
      fixture.script({ tokens: ["cut"], finishReason });
      const { frames } = await roundTrip(pair.writer, pair.reader, { message: "go" });
      expect(JSON.parse(frames.at(-1)![1]).finish_reason).toBe(finishReason);
    }
  });

  it("passes every field of POST /api/v1/sessions to the upstream as sent", async () => {
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
          name: "ana",
        },
      ],
      instructions: "Be brief.",
      model: "gpt-other",
      tools: [WEATHER],
      tool_choice: "auto",
      parallel_tool_calls: false,
      temperature: 0,
      top_p: 0.5,
      max_completion_tokens: 256,
      response_format: {
        type: "json_schema",
        json_schema: { name: "answer", schema: { type: "object" }, strict: true },
      },
      reasoning_effort: "minimal",
      seed: 42,
      stop: ["\n\n"],
    };
    fixture.script({ tokens: ["{}"] });
    const before = fixture.requests.length;
    await roundTrip(pair.writer, pair.reader, body);
    const sent = fixture.requests[before]!.body as Json;
    const { messages, instructions, model, ...fields } = body;
    expect(sent).toEqual({
      ...fields,
      model,
      messages: [{ role: "system", content: instructions }, ...messages],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("POST /api/v1/agent/stream takes messages and the same fields, and streams the events", async () => {
    fixture.script({
      steps: toolCallSteps([{ id: "call_S", name: "get_weather", args: ['{"city":"Rome"}'] }]),
      finishReason: "tool_calls",
    });
    const before = fixture.requests.length;
    const res = await fetch(`${pair.writer.url}/api/v1/agent/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({
        messages: [{ role: "user", content: "Rome?" }],
        tools: [WEATHER],
        tool_choice: { type: "function", function: { name: "get_weather" } },
        temperature: 0.3,
      }),
    });
    expect(res.status).toBe(200);
    const frames = parseSse(await res.text());
    expect(frames.map(([type]) => type)).toEqual([
      "start",
      "tool_call_delta",
      "tool_call_delta",
      "tool_call",
      "usage",
      "done",
    ]);
    expect(frames[3]![1]).toBe(
      JSON.stringify({ index: 0, id: "call_S", name: "get_weather", arguments: '{"city":"Rome"}' }),
    );
    expect(fixture.requests[before]!.body).toMatchObject({
      messages: [{ role: "user", content: "Rome?" }],
      tools: [WEATHER],
      tool_choice: { type: "function", function: { name: "get_weather" } },
      temperature: 0.3,
    });
  });

  it("a tool round trip: the call, the caller runs it, the next run answers with its result", async () => {
    fixture.script({
      steps: toolCallSteps([{ id: "call_R", name: "get_weather", args: ['{"city":"Lima"}'] }]),
      finishReason: "tool_calls",
    });
    const first = await roundTrip(pair.writer, pair.reader, {
      message: "Weather in Lima?",
      tools: [WEATHER],
    });
    const call = JSON.parse(first.frames.find(([type]) => type === "tool_call")![1]) as Json;
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
    fixture.script({ tokens: ["It is", " 19 °C", " in Lima."] });
    const before = fixture.requests.length;
    const second = await roundTrip(pair.reader, pair.writer, { messages: history, tools: [WEATHER] });
    expect((fixture.requests[before]!.body as Json).messages).toEqual(history);
    expect(
      second.frames.filter(([type]) => type === "token").map(([, data]) => JSON.parse(data).content),
    ).toEqual(["It is", " 19 °C", " in Lima."]);
  });

  it.each([
    ["an unknown field", { message: "x", foo: 1 }, "body.foo: unknown field"],
    ["n", { message: "x", n: 2 }, "body.n: unknown field"],
    ["max_tokens", { message: "x", max_tokens: 5 }, "body.max_tokens: unknown field"],
    [
      "an unknown field of a tool",
      { message: "x", tools: [{ ...WEATHER, extra: true }] },
      "body.tools.0.extra",
    ],
    [
      "a function message",
      { messages: [{ role: "function", name: "f", content: "x" }] },
      "body.messages.0.role",
    ],
    [
      "a tool result for no call",
      { messages: [{ role: "tool", tool_call_id: "c", content: "x" }] },
      "tool_call_id",
    ],
    [
      "tool_choice naming no tool",
      { message: "x", tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } },
      "body.tool_choice.function.name",
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
});

describe("the simulated model (no API key), read on another instance", () => {
  let writer: TestGateway;
  let reader: TestGateway;
  beforeAll(async () => {
    const prefix = randomPrefix();
    writer = await startTestGateway({ redisUrl: inject("redisUrl"), prefix });
    reader = await startTestGateway({ redisUrl: inject("redisUrl"), prefix });
  });
  afterAll(async () => {
    await writer?.close();
    await reader?.close();
  });

  it("calls a given tool, then answers its result in text", async () => {
    const created = await postJson(`${writer.url}/api/v1/sessions`, {
      message: "Weather in Paris",
      tools: [WEATHER],
    });
    expect(created.status, created.text).toBe(201);
    const first = await collectUntilClosed(`${reader.url}/api/v1/sessions/${created.body.id}/stream`);
    expect(JSON.parse(first.events[0]!.data)).toMatchObject({ model: "simulated", simulated: true });
    const call = JSON.parse(first.events.find((e) => e.event === "tool_call")!.data) as Json;
    expect(call).toMatchObject({ index: 0, name: "get_weather", arguments: '{"city":"Paris"}' });
    expect(JSON.parse(first.events.at(-1)!.data).finish_reason).toBe("tool_calls");
    const deltas = first.events.filter((e) => e.event === "tool_call_delta").map((e) => JSON.parse(e.data));
    expect(deltas.map((delta) => delta.arguments).join("")).toBe(call.arguments);

    const next = await postJson(`${reader.url}/api/v1/sessions`, {
      messages: [
        { role: "user", content: "Weather in Paris" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } },
          ],
        },
        { role: "tool", tool_call_id: call.id, content: "21 °C, sunny" },
      ],
      tools: [WEATHER],
    });
    expect(next.status, next.text).toBe(201);
    const second = await collectUntilClosed(`${writer.url}/api/v1/sessions/${next.body.id}/stream`);
    const text = second.events
      .filter((e) => e.event === "token")
      .map((e) => JSON.parse(e.data).content)
      .join("");
    expect(text.startsWith("(Simulated) get_weather returned 21 °C, sunny.")).toBe(true);
    expect(JSON.parse(second.events.at(-1)!.data).finish_reason).toBe("stop");
  });
});

describe("/client.js typed handlers, against real gateways", () => {
  let writer: TestGateway;
  let reader: TestGateway;
  beforeAll(async () => {
    const prefix = randomPrefix();
    writer = await startTestGateway({ redisUrl: inject("redisUrl"), prefix });
    reader = await startTestGateway({ redisUrl: inject("redisUrl"), prefix });
  });
  afterAll(async () => {
    await writer?.close();
    await reader?.close();
  });

  it("onReasoning, onToolCallDelta, onToolCall and usage's reasoning_tokens, for a run started with startSession", async () => {
    const { id } = await startSession(
      { message: "Weather in Oslo", tools: [WEATHER as FunctionTool], reasoning_effort: "low" },
      { baseUrl: writer.url },
    );
    let reasoning = "";
    let args = "";
    const calls: ToolCallData[] = [];
    let usage: UsageData | undefined;
    let finished: (reason: string) => void = () => {};
    const finish = new Promise<string>((resolve) => {
      finished = resolve;
    });
    const connection = connect({
      sessions: [id],
      baseUrl: reader.url,
      EventSource,
      handlers: {
        onReasoning: (content) => {
          reasoning += content;
        },
        onToolCallDelta: (delta) => {
          args += delta.arguments;
        },
        onToolCall: (call) => {
          calls.push(call);
        },
        onUsage: (data) => {
          usage = data;
        },
        onDone: (data) => {
          finished(data.finish_reason);
        },
      },
    });
    try {
      expect(await finish).toBe("tool_calls");
    } finally {
      connection.close();
    }
    expect(reasoning.startsWith("Let me think about this:")).toBe(true);
    expect(calls).toEqual([
      { index: 0, id: expect.stringMatching(/^call_sim/), name: "get_weather", arguments: '{"city":"Oslo"}' },
    ]);
    expect(args).toBe(calls[0]!.arguments);
    expect(usage?.reasoning_tokens).toBe(12);
  });

  it("onRefusal gets each refusal delta, onUsage the usage with cached_tokens (OpenAI upstream)", async () => {
    const fixture = await startOpenAIFixture();
    const pair = await startAgentPair(fixture);
    try {
      const parts = ["I'm sorry,", " but I can't", " help with that 🙅."];
      fixture.script({ steps: refusalSteps(parts), usage: USAGE });
      const { id } = await startSession({ message: "something bad" }, { baseUrl: pair.writer.url });
      const refusals: Array<[string, string]> = [];
      const tokens: string[] = [];
      let usage: UsageData | undefined;
      let finished: (data: { finish_reason: string; total_tokens: number }) => void = () => {};
      const done = new Promise<{ finish_reason: string; total_tokens: number }>((resolve) => {
        finished = resolve;
      });
      const connection = connect({
        sessions: [id],
        baseUrl: pair.reader.url,
        EventSource,
        handlers: {
          onRefusal: (content, sessionId) => {
            refusals.push([content, sessionId]);
          },
          onToken: (content) => {
            tokens.push(content);
          },
          onUsage: (data) => {
            usage = data;
          },
          onDone: (data) => finished(data),
        },
      });
      let end: { finish_reason: string; total_tokens: number };
      try {
        end = await done;
      } finally {
        connection.close();
      }
      expect(refusals).toEqual(parts.map((content) => [content, id]));
      expect(tokens).toEqual([]);
      expect(usage).toEqual(USAGE_EVENT);
      expect(usage?.cached_tokens).toBe(32);
      expect(end).toMatchObject({ finish_reason: "stop", total_tokens: 58 });
    } finally {
      await pair.close();
      await fixture.close();
    }
  });
});
