/**
 * Readers that are behind, on another instance than the run: a compacted session's snapshot restores
 * reasoning and tool calls as well as text, and a catch-up that folds deltas (MERGE_TOKENS_WHEN_BEHIND)
 * folds reasoning like tokens but never tool-call deltas of different calls. Real SDK, real fixture.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { reasoningSteps, type ScriptedCall, toolCallSteps } from "../fixtures/openai-scripts.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  collectUntilClosed,
  postJson,
  randomPrefix,
  type SseEvent,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

type Json = Record<string, unknown>;

const REASONING = Array.from({ length: 30 }, (_, i) => (i % 7 === 0 ? ` step ${i} "é"\n` : ` r${i}`));
const ANSWER = Array.from({ length: 30 }, (_, i) => (i % 11 === 0 ? ` 🎉${i}` : ` t${i}`));
const CALLS: ScriptedCall[] = [
  { id: "call_a", name: "lookup", args: ['{"q', '":"', "alpha", '"', "}"] },
  { id: "call_b", name: "fetch_page", args: ['{"url":', '"https://', "example.com/", '?x=1"}'] },
];

/** What a reader that never fell behind ends up with. */
const EXPECTED = {
  reasoning: REASONING.join(""),
  content: ANSWER.join(""),
  calls: CALLS.map((call, index) => ({ index, id: call.id, name: call.name, arguments: call.args.join("") })),
};

/** Folds what a reader received (snapshot first, if any) into reasoning, content and calls. */
function assemble(events: SseEvent[]) {
  let reasoning = "";
  let content = "";
  const calls = new Map<number, { index: number; id?: string; name?: string; arguments: string }>();
  const callAt = (index: number) => {
    const call = calls.get(index) ?? { index, arguments: "" };
    calls.set(index, call);
    return call;
  };
  for (const event of events) {
    const data = JSON.parse(event.data) as Json;
    switch (event.event) {
      case "snapshot":
        reasoning = data.reasoning as string;
        content = data.content as string;
        calls.clear();
        for (const call of data.tool_calls as Array<Json>) Object.assign(callAt(call.index as number), call);
        break;
      case "reasoning":
        reasoning += data.content as string;
        break;
      case "token":
        content += data.content as string;
        break;
      case "tool_call_delta": {
        const call = callAt(data.index as number);
        if (typeof data.id === "string") call.id = data.id;
        if (typeof data.name === "string") call.name = data.name;
        call.arguments += data.arguments as string;
        break;
      }
      case "tool_call":
        Object.assign(callAt(data.index as number), data);
        break;
    }
  }
  return { reasoning, content, calls: [...calls.values()].sort((a, b) => a.index - b.index) };
}

let fixture: OpenAIFixture;
const gateways: TestGateway[] = [];
beforeAll(async () => {
  fixture = await startOpenAIFixture();
});
afterEach(async () => {
  for (const gateway of gateways.splice(0)) await gateway.close();
});
afterAll(async () => {
  await fixture?.close();
});

async function pair(env: Record<string, string>) {
  const options = {
    redisUrl: inject("redisUrl"),
    prefix: randomPrefix(),
    env: { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fixture.url, DEFAULT_MODEL: "gpt-test", ...env },
  };
  const writer = await startTestGateway(options);
  const reader = await startTestGateway(options);
  gateways.push(writer, reader);
  return { writer, reader };
}

/** A run that reasons, answers and calls two tools; read in full once it has ended. */
async function runAndReadLate(writer: TestGateway, reader: TestGateway): Promise<SseEvent[]> {
  fixture.script({
    steps: [...reasoningSteps(REASONING, ANSWER), ...toolCallSteps(CALLS)],
    finishReason: "tool_calls",
  });
  const created = await postJson(`${writer.url}/api/v1/sessions`, {
    message: "go",
    tools: CALLS.map((call) => ({ type: "function", function: { name: call.name } })),
  });
  expect(created.status, created.text).toBe(201);
  const id = created.body.id as string;
  // The run's own stream on its instance ends with it; the late reader comes after.
  await collectUntilClosed(`${writer.url}/api/v1/sessions/${id}/stream`);
  return (await collectUntilClosed(`${reader.url}/api/v1/sessions/${id}/stream`)).events;
}

describe("readers behind", () => {
  it("a compacted session's snapshot restores reasoning and tool calls as well as the text", async () => {
    const { writer, reader } = await pair({ MAX_EVENTS_PER_SESSION: "10" });
    const events = await runAndReadLate(writer, reader);
    expect(events[0]!.event).toBe("snapshot");
    const snapshot = JSON.parse(events[0]!.data) as Json;
    expect(snapshot.reasoning).toBe(EXPECTED.reasoning);
    expect((snapshot.folded as Json).reasoning).toBe(REASONING.length);
    expect(events.length).toBeLessThanOrEqual(11);
    expect(assemble(events)).toEqual(EXPECTED);
    expect(events.at(-1)!.event).toBe("done");
  });

  it("a catch-up folds reasoning runs and one call's deltas, never two calls' deltas together", async () => {
    const { writer, reader } = await pair({ CATCH_UP_BATCH: "8" });
    const events = await runAndReadLate(writer, reader);
    expect(assemble(events)).toEqual(EXPECTED);
    const reasoningFrames = events.filter((e) => e.event === "reasoning");
    expect(reasoningFrames.length).toBeLessThan(REASONING.length);
    const deltas = events.filter((e) => e.event === "tool_call_delta").map((e) => JSON.parse(e.data) as Json);
    const deltaCount = CALLS.reduce((sum, call) => sum + call.args.length + 1, 0);
    expect(deltas.length).toBeLessThan(deltaCount);
    // Each folded frame is one call's: its arguments are a contiguous piece of that call's arguments.
    for (const delta of deltas) {
      const whole = EXPECTED.calls[delta.index as number]!.arguments;
      expect(whole).toContain(delta.arguments as string);
    }
    // Frames keep the stream's order: no frame of call 0 after call 1 started.
    const order = events.flatMap((e) =>
      e.event === "tool_call_delta" || e.event === "tool_call" ? [(JSON.parse(e.data) as Json).index] : [],
    );
    expect(order).toEqual([...order].sort());
  });
});
