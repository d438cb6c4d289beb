/**
 * Readers that are behind, on another instance than the run: a compacted session's snapshot restores
 * reasoning and tool calls as well as text, and a catch-up that folds deltas (MERGE_TOKENS_WHEN_BEHIND)
 * folds reasoning like tokens but never tool-call deltas of different calls; on a single-session and on
 * a multiplexed connection alike. Real SDK, real fixture.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { reasoningSteps, type ScriptedCall, toolCallSteps } from "../fixtures/openai-scripts.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  type AgentPair,
  assemble,
  expectFoldedDeltasOfOneCall,
  type Json,
  sessionFrames,
  startAgentPair,
  startRun,
} from "../helpers/agent-pair.js";
import { collectUntilClosed, type SseEvent, type TestGateway } from "../helpers/index.js";

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

let fixture: OpenAIFixture;
const pairs: AgentPair[] = [];
beforeAll(async () => {
  fixture = await startOpenAIFixture();
});
afterEach(async () => {
  for (const started of pairs.splice(0)) await started.close();
});
afterAll(async () => {
  await fixture?.close();
});

async function pair(env: Record<string, string>) {
  const started = await startAgentPair(fixture, env);
  pairs.push(started);
  return started;
}

/** Starts a run that reasons, answers and calls two tools; resolves once it has ended. */
async function runToEnd(writer: TestGateway): Promise<string> {
  fixture.script({
    steps: [...reasoningSteps(REASONING, ANSWER), ...toolCallSteps(CALLS)],
    finishReason: "tool_calls",
  });
  const id = await startRun(writer, {
    message: "go",
    tools: CALLS.map((call) => ({ type: "function", function: { name: call.name } })),
  });
  // The run's own stream on its instance ends with it; the late reader comes after.
  await collectUntilClosed(`${writer.url}/api/v1/sessions/${id}/stream`);
  return id;
}

/** The run, read in full on the other instance once it has ended. */
async function runAndReadLate(writer: TestGateway, reader: TestGateway): Promise<SseEvent[]> {
  const id = await runToEnd(writer);
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
    const deltas = events.filter((e) => e.event === "tool_call_delta");
    const deltaCount = CALLS.reduce((sum, call) => sum + call.args.length + 1, 0);
    expect(deltas.length).toBeLessThan(deltaCount);
    expectFoldedDeltasOfOneCall(
      events.map((e) => [e.event, e.data]),
      EXPECTED,
    );
  });
});

describe("multiplexed readers behind", () => {
  /** Two such runs, read late together on one multiplexed connection on the other instance. */
  async function readLateTogether(env: Record<string, string>) {
    const { writer, reader } = await pair(env);
    const ids = [await runToEnd(writer), await runToEnd(writer)];
    const mux = await collectUntilClosed(`${reader.url}/api/v1/stream?sessions=${ids.join(",")}`);
    return { ids, events: mux.events };
  }

  it("each compacted session's snapshot restores reasoning and tool calls", async () => {
    const { ids, events } = await readLateTogether({ MAX_EVENTS_PER_SESSION: "10" });
    for (const id of ids) {
      const frames = sessionFrames(events, id);
      expect(frames[0]![0]).toBe("snapshot");
      const snapshot = JSON.parse(frames[0]![1]) as Json;
      expect(snapshot.reasoning).toBe(EXPECTED.reasoning);
      expect((snapshot.folded as Json).reasoning).toBe(REASONING.length);
      expect(frames.length).toBeLessThanOrEqual(11);
      expect(assemble(events, id)).toEqual(EXPECTED);
      expect(frames.at(-1)![0]).toBe("done");
    }
  });

  it("a catch-up folds each session's reasoning runs and one call's deltas, never two calls' together", async () => {
    const { ids, events } = await readLateTogether({ CATCH_UP_BATCH: "8" });
    const deltaCount = CALLS.reduce((sum, call) => sum + call.args.length + 1, 0);
    for (const id of ids) {
      const frames = sessionFrames(events, id);
      expect(assemble(events, id)).toEqual(EXPECTED);
      expect(frames.filter(([type]) => type === "reasoning").length).toBeLessThan(REASONING.length);
      expect(frames.filter(([type]) => type === "tool_call_delta").length).toBeLessThan(deltaCount);
      expectFoldedDeltasOfOneCall(frames, EXPECTED);
      expect(frames.at(-1)![0]).toBe("done");
    }
  });
});
