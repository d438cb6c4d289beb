import { afterEach, describe, expect, it, vi } from "vitest";
import { createSimulatedProvider, type Sleep } from "../../src/agent/simulated-provider.js";
import {
  type ChatMessage,
  type ModelChunk,
  type ModelOptions,
  type ModelProvider,
  UpstreamError,
} from "../../src/agent/types.js";

const noSleep: Sleep = async () => {};

async function run(model: ModelProvider, content: string, signal = new AbortController().signal) {
  const chunks: ModelChunk[] = [];
  let error: unknown;
  try {
    for await (const chunk of model.stream({
      model: "simulated",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content },
      ],
      signal,
    })) {
      chunks.push(chunk);
    }
  } catch (caught) {
    error = caught;
  }
  const tokens = chunks.flatMap((chunk) => (chunk.kind === "token" ? [chunk.content] : []));
  return { chunks, tokens, error };
}

async function runRequest(model: ModelProvider, messages: ChatMessage[], options: ModelOptions) {
  const chunks: ModelChunk[] = [];
  for await (const chunk of model.stream({
    model: "simulated",
    messages,
    options,
    signal: new AbortController().signal,
  })) {
    chunks.push(chunk);
  }
  return chunks;
}

const WEATHER_TOOL = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer", minimum: 1, maximum: 2 },
        alerts: { type: "boolean" },
        where: {
          type: "object",
          properties: { lat: { type: "number" }, note: { type: "string" } },
          required: ["lat"],
        },
        optional: { type: "string" },
      },
      required: ["city", "unit", "days", "alerts", "where"],
    },
  },
};

afterEach(() => {
  vi.useRealTimers();
});

describe("simulated provider", () => {
  it("emits exactly N tokens for [tokens=N], then usage and finish", async () => {
    const model = createSimulatedProvider({ tokensPerSecond: 1000, sleep: noSleep });
    for (const n of [0, 1, 7, 250]) {
      const { chunks, tokens, error } = await run(model, `count please [tokens=${n}]`);
      expect(error).toBeUndefined();
      expect(tokens).toHaveLength(n);
      expect(chunks.slice(-2)).toEqual([
        { kind: "usage", usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } },
        { kind: "finish", reason: "stop" },
      ]);
    }
  });

  it("writes deterministic, plausible text of 40 to 120 tokens", async () => {
    const model = createSimulatedProvider({ tokensPerSecond: 1000, sleep: noSleep });
    const first = await run(model, "Tell me about streams.");
    const again = await run(model, "Tell me about streams.");
    const other = await run(model, "Something else entirely.");
    expect(first.tokens).toEqual(again.tokens);
    expect(first.tokens).not.toEqual(other.tokens);
    for (const { tokens } of [first, other]) {
      expect(tokens.length).toBeGreaterThanOrEqual(40);
      expect(tokens.length).toBeLessThanOrEqual(120);
      expect(tokens[0]).toMatch(/^[A-Z][a-z]*$/);
      for (const token of tokens.slice(1)) expect(token).toMatch(/^( [A-Za-z]+[,.!]?|\n\n|[A-Z][a-z]*)$/);
    }
    expect(first.tokens.join("")).toMatch(/[.!]/);
  });

  it("paces one sleep per token at low rates", async () => {
    const sleeps: number[] = [];
    const model = createSimulatedProvider({
      tokensPerSecond: 10,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    await run(model, "[tokens=20]");
    expect(sleeps).toHaveLength(20);
    for (const ms of sleeps) expect(ms).toBeCloseTo(100);
  });

  it("sleeps once per burst at high rates, keeping the total time right", async () => {
    const sleeps: number[] = [];
    const model = createSimulatedProvider({
      tokensPerSecond: 2000,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    const { tokens } = await run(model, "[tokens=1001]");
    expect(tokens).toHaveLength(1001);
    expect(sleeps.length).toBeLessThanOrEqual(1001 / 4 + 1);
    for (const ms of sleeps) expect(ms).toBeLessThanOrEqual(4.0001);
    expect(sleeps.reduce((sum, ms) => sum + ms, 0)).toBeCloseTo(500.5);
  });

  it("paces in real time with the default sleep (fake timers)", async () => {
    vi.useFakeTimers();
    const model = createSimulatedProvider({ tokensPerSecond: 10 });
    const done = run(model, "[tokens=30]");
    await vi.advanceTimersByTimeAsync(1050);
    // Nothing ends until the last token is due.
    let finished = false;
    void done.then(() => {
      finished = true;
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(finished).toBe(false);
    await vi.advanceTimersByTimeAsync(1000);
    const { tokens } = await done;
    expect(tokens).toHaveLength(30);
  });

  it("stops promptly when the signal aborts mid-sleep", async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    const model = createSimulatedProvider({ tokensPerSecond: 10 });
    const done = run(model, "[tokens=100]", controller.signal);
    await vi.advanceTimersByTimeAsync(350);
    controller.abort();
    // No timers advance: the pending sleep must end on the abort itself.
    const { chunks, tokens, error } = await done;
    expect(error).toBeUndefined();
    expect(tokens).toHaveLength(3);
    expect(chunks.every((chunk) => chunk.kind === "token")).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stops when the signal aborts between tokens, with an injected sleep", async () => {
    const controller = new AbortController();
    let calls = 0;
    const model = createSimulatedProvider({
      tokensPerSecond: 50,
      sleep: async () => {
        calls += 1;
        if (calls === 6) controller.abort();
      },
    });
    const { tokens, error } = await run(model, "[tokens=100]", controller.signal);
    expect(error).toBeUndefined();
    expect(tokens).toHaveLength(5);
  });

  it("throws upstream_error after 3 tokens for [fail]", async () => {
    const model = createSimulatedProvider({ tokensPerSecond: 1000, sleep: noSleep });
    const { tokens, error } = await run(model, "please [fail]");
    expect(tokens).toHaveLength(3);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).code).toBe("upstream_error");
  });

  it("rejects a non-positive rate", () => {
    expect(() => createSimulatedProvider({ tokensPerSecond: 0 })).toThrow(RangeError);
  });

  describe("with tools", () => {
    const model = createSimulatedProvider({ tokensPerSecond: 1000, sleep: noSleep });
    const ask: ChatMessage[] = [{ role: "user", content: "What is the weather in Paris?" }];

    it("calls one of them with arguments valid against its schema, then finishes with tool_calls", async () => {
      const chunks = await runRequest(model, ask, { tools: [WEATHER_TOOL] });
      const deltas = chunks.filter((chunk) => chunk.kind === "tool_call_delta");
      const call = chunks.find((chunk) => chunk.kind === "tool_call");
      expect(deltas[0]).toMatchObject({ index: 0, name: "get_weather", arguments: "" });
      expect(deltas[0]!.id).toMatch(/^call_sim/);
      expect(deltas.length).toBeGreaterThan(2);
      expect(call).toMatchObject({ index: 0, id: deltas[0]!.id, name: "get_weather" });
      expect(deltas.map((delta) => delta.arguments).join("")).toBe(call!.arguments);
      expect(JSON.parse(call!.arguments)).toEqual({
        city: "Paris",
        unit: "celsius",
        days: 2,
        alerts: true,
        where: { lat: 3 },
      });
      expect(chunks.some((chunk) => chunk.kind === "token")).toBe(false);
      expect(chunks.at(-1)).toEqual({ kind: "finish", reason: "tool_calls" });
      expect(chunks.at(-2)).toMatchObject({ kind: "usage", usage: { completion_tokens: deltas.length } });
    });

    it("follows tool_choice: a named function, or none (text)", async () => {
      const other = { type: "function" as const, function: { name: "get_time" } };
      const named = await runRequest(model, ask, {
        tools: [WEATHER_TOOL, other],
        tool_choice: { type: "function", function: { name: "get_time" } },
      });
      expect(named.find((chunk) => chunk.kind === "tool_call")).toMatchObject({
        name: "get_time",
        arguments: "{}",
      });
      const none = await runRequest(model, ask, { tools: [WEATHER_TOOL], tool_choice: "none" });
      expect(none.some((chunk) => chunk.kind === "tool_call")).toBe(false);
      expect(none.at(-1)).toEqual({ kind: "finish", reason: "stop" });
    });

    it("answers in text once the last message is the tool's result", async () => {
      const chunks = await runRequest(
        model,
        [
          ...ask,
          {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "get_weather", arguments: '{"city":"Paris"}' },
              },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: '{"temp":21}' },
        ],
        { tools: [WEATHER_TOOL] },
      );
      expect(chunks.some((chunk) => chunk.kind === "tool_call" || chunk.kind === "tool_call_delta")).toBe(
        false,
      );
      const text = chunks.flatMap((chunk) => (chunk.kind === "token" ? [chunk.content] : [])).join("");
      expect(text.startsWith('(Simulated) get_weather returned {"temp":21}.\n\n')).toBe(true);
      expect(chunks.at(-1)).toEqual({ kind: "finish", reason: "stop" });
    });
  });

  it("thinks first when asked for reasoning_effort: reasoning chunks, counted in usage", async () => {
    const model = createSimulatedProvider({ tokensPerSecond: 1000, sleep: noSleep });
    const chunks = await runRequest(model, [{ role: "user", content: "hi [tokens=5]" }], {
      reasoning_effort: "low",
    });
    const reasoning = chunks.filter((chunk) => chunk.kind === "reasoning");
    expect(reasoning).toHaveLength(12);
    expect(chunks.findIndex((chunk) => chunk.kind === "token")).toBe(12);
    expect(chunks.at(-2)).toEqual({
      kind: "usage",
      usage: { prompt_tokens: 2, completion_tokens: 17, total_tokens: 19, reasoning_tokens: 12 },
    });
  });

  it("stops at max_completion_tokens with finish_reason length", async () => {
    const model = createSimulatedProvider({ tokensPerSecond: 1000, sleep: noSleep });
    const chunks = await runRequest(model, [{ role: "user", content: "hi [tokens=50]" }], {
      max_completion_tokens: 7,
    });
    expect(chunks.filter((chunk) => chunk.kind === "token")).toHaveLength(7);
    expect(chunks.at(-1)).toEqual({ kind: "finish", reason: "length" });
  });
});
