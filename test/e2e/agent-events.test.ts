/**
 * The dashboard (`GET /`) in Chromium against built gateway processes on a real Redis, for agent
 * streams in full: a run's reasoning shows in a "Thinking" block apart from its answer (each exactly
 * its own text), a tool call's name and arguments as they stream, two parallel calls each in its
 * place, a refusal as such, and the answer to a tool's result; a compacted session's panel gets
 * reasoning and the call back from the snapshot; a page served by one instance shows a run that
 * another instance (same Redis) is running. Runs come from the simulated model and from the OpenAI
 * fixture (`test/fixtures/openai-server.ts`, the wire format OpenAI and compatible servers send).
 */
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { reasoningSteps, refusalSteps, toolCallSteps } from "../fixtures/openai-scripts.js";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import { type GatewayProcess, postJson, randomPrefix } from "../helpers/index.js";
import {
  distinct,
  type PanelState,
  panelView,
  recordPanels,
  seenStates,
  sessionParts,
  waitForStatus,
} from "./helpers/agent-panels.js";
import { ensureBuilt, launchChromium, startBuiltGateway, watchErrors } from "./helpers/browser.js";

const WAIT_MS = 30_000;
/** Slow enough that a call's arguments arrive over many frames the page can see one by one. */
const TOKENS_PER_SECOND = 10;
/** The fixture's pause between frames, for the same reason. */
const FIXTURE_FRAME_MS = 120;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Several required properties: long arguments, streamed in several fragments. */
const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string" },
        country: { type: "string" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer", minimum: 1, maximum: 7 },
      },
      required: ["city", "country", "unit", "days"],
    },
  },
};

let browser: Browser;
const gateways: GatewayProcess[] = [];
const contexts: BrowserContext[] = [];

async function startGateway(env: Record<string, string> = {}): Promise<GatewayProcess> {
  const gateway = await startBuiltGateway({
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: randomPrefix(),
    SIMULATED_TOKENS_PER_SECOND: String(TOKENS_PER_SECOND),
    LOG_LEVEL: "warn",
    ...env,
  });
  gateways.push(gateway);
  return gateway;
}

/** A gateway whose default model is the fixture's (`model: "simulated"` still picks the simulated one). */
function fixtureEnv(fixture: OpenAIFixture): Record<string, string> {
  return { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fixture.url, DEFAULT_MODEL: "gpt-test" };
}

async function openDashboard(url: string): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  const errors = watchErrors(page);
  // Finished panels stay open (never collapse into the Finished list) while the test reads them.
  await page.goto(`${url}?collapseAfter=0`);
  await page.waitForSelector("#connection[data-state='live']", { timeout: WAIT_MS });
  await recordPanels(page);
  return { page, errors };
}

async function create(gatewayUrl: string, body: Record<string, unknown>): Promise<string> {
  const created = await postJson(`${gatewayUrl}/api/v1/sessions`, body);
  expect(created.status, created.text).toBe(201);
  return created.body.id as string;
}

/**
 * Reasoning and answer apart, while streaming and at the end: the Thinking block holds exactly the
 * reasoning and the answer area exactly the answer, neither ever holding any of the other.
 */
function expectApart(
  view: Awaited<ReturnType<typeof panelView>>,
  states: PanelState[],
  truth: { reasoning: string; text: string },
): void {
  expect(truth.reasoning.length).toBeGreaterThan(0);
  expect(truth.text.length).toBeGreaterThan(0);
  expect(view.apart).toBe(true);
  expect(view.thinkingHidden).toBe(false);
  expect(view.thinkingShown).toBe(true);
  expect(view.reasoning).toBe(truth.reasoning);
  expect(view.answerShown).toBe(true);
  expect(view.noAnswer).toBe(false);
  expect(view.answer).toBe(truth.text);
  expect(view.answer).not.toContain(truth.reasoning);
  expect(view.reasoning).not.toContain(truth.text);
  expect(view.thinkingText).not.toContain(truth.text);
  for (const state of states) {
    expect(truth.reasoning.startsWith(state.reasoning)).toBe(true);
    expect(truth.text.startsWith(state.answer)).toBe(true);
  }
  // The reasoning came first, and showed while the answer area was still empty.
  expect(states.some((state) => state.reasoning !== "" && state.answer === "")).toBe(true);
}

/** A single call streamed into place: its name from the first fragment, arguments growing to the whole. */
function expectStreamedCall(states: PanelState[], call: { name: string; arguments: string }): void {
  const args = distinct(
    states.flatMap((state) => state.calls.filter((c) => c.index === 0).map((c) => c.args)),
  );
  expect(args.length).toBeGreaterThan(3);
  for (const seen of args) expect(call.arguments.startsWith(seen)).toBe(true);
  expect(args.at(-1)).toBe(call.arguments);
  const streaming = states.flatMap((state) => state.calls.filter((c) => c.state === "streaming"));
  expect(streaming.length).toBeGreaterThan(0);
  for (const c of streaming) expect(c.name).toBe(call.name);
  expect(streaming.some((c) => c.args.length > 0 && c.args.length < call.arguments.length)).toBe(true);
}

beforeAll(async () => {
  ensureBuilt();
  browser = await launchChromium();
}, 120_000);

afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close().catch(() => {});
  for (const gateway of gateways.splice(0)) await gateway.stop();
});

afterAll(async () => {
  await browser?.close();
});

describe("the dashboard, for agent streams in full (simulated model)", () => {
  it("shows reasoning apart, a tool call's name and streaming arguments, then the answer to its result", async () => {
    const gateway = await startGateway();
    const { page, errors } = await openDashboard(`${gateway.url}/`);

    const id = await create(gateway.url, {
      message: "What is the weather in Lisbon",
      tools: [WEATHER_TOOL],
      reasoning_effort: "low",
    });

    // While it runs: the reasoning shows in the Thinking block, not in the answer.
    await page.waitForSelector(`.panel[data-session-id="${id}"] .thinking:not([hidden])`, {
      timeout: WAIT_MS,
    });
    await page.waitForSelector(`.panel[data-session-id="${id}"] .tool-call[data-state="streaming"]`, {
      timeout: WAIT_MS,
    });
    await waitForStatus(page, id, "done");

    const truth = await sessionParts(gateway.url, id);
    expect(truth.call?.name).toBe("get_weather");
    const view = await panelView(page, id);
    expect(view.thinkingHidden).toBe(false);
    expect(view.reasoning).toBe(truth.reasoning);
    expect(view.reasoning.length).toBeGreaterThan(0);
    expect(view.answer).toBe("");
    expect(view.toolsHidden).toBe(false);
    expect(view.calls).toEqual([
      {
        index: "0",
        state: "complete",
        callId: truth.call!.id,
        name: "get_weather",
        args: truth.call!.arguments,
      },
    ]);
    expect(JSON.parse(truth.call!.arguments)).toEqual({
      city: "Lisbon",
      country: "Lisbon",
      unit: "celsius",
      days: 3,
    });
    // The arguments grew on the page fragment by fragment, each a prefix of the whole.
    expectStreamedCall(await seenStates(page, id), truth.call!);

    // The caller runs the tool and starts the next run with its result: the answer is text.
    const answerId = await create(gateway.url, {
      messages: [
        { role: "user", content: "What is the weather in Lisbon" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: truth.call!.id,
              type: "function",
              function: { name: "get_weather", arguments: truth.call!.arguments },
            },
          ],
        },
        { role: "tool", tool_call_id: truth.call!.id, content: "18 °C and windy" },
      ],
      tools: [WEATHER_TOOL],
    });
    await waitForStatus(page, answerId, "done");
    const answer = await panelView(page, answerId);
    expect(answer.answer.startsWith("(Simulated) get_weather returned 18 °C and windy.")).toBe(true);
    expect(answer.calls).toEqual([]);
    expect(answer.toolsHidden).toBe(true);
    expect(answer.thinkingHidden).toBe(true);
    expect(errors).toEqual([]);
  });

  it("a run that thinks then answers: the Thinking block holds exactly the reasoning, the answer area exactly the answer", async () => {
    const gateway = await startGateway();
    const { page, errors } = await openDashboard(`${gateway.url}/`);
    const id = await create(gateway.url, {
      message: "Explain what a stream is [tokens=20]",
      reasoning_effort: "medium",
    });
    await waitForStatus(page, id, "done");

    const truth = await sessionParts(gateway.url, id);
    expect(truth.reasoning.startsWith("Let me think about this:")).toBe(true);
    expect(truth.calls).toEqual([]);
    const view = await panelView(page, id);
    expectApart(view, await seenStates(page, id), truth);
    expect(view.toolsHidden).toBe(true);
    expect(view.refusalHidden).toBe(true);
    expect(errors).toEqual([]);
  });

  it("a compacted session's panel gets its reasoning and tool call back from the snapshot", async () => {
    // Ten events kept: the run's reasoning and most of its call are folded into the snapshot.
    const gateway = await startGateway({ MAX_EVENTS_PER_SESSION: "10", SIMULATED_TOKENS_PER_SECOND: "1000" });
    const id = await create(gateway.url, {
      message: "What is the weather in Quito",
      tools: [WEATHER_TOOL],
      reasoning_effort: "medium",
    });
    const truth = await sessionParts(gateway.url, id);
    expect(truth.reasoning.split(" ").length).toBeGreaterThan(10);

    const { page, errors } = await openDashboard(`${gateway.url}/`);
    await waitForStatus(page, id, "done");
    await page.waitForSelector(`.panel[data-session-id="${id}"] .tool-call[data-state="complete"]`, {
      timeout: WAIT_MS,
    });
    const view = await panelView(page, id);
    expect(view.reasoning).toBe(truth.reasoning);
    expect(view.calls).toEqual([
      {
        index: "0",
        state: "complete",
        callId: truth.call!.id,
        name: "get_weather",
        args: truth.call!.arguments,
      },
    ]);
    expect(errors).toEqual([]);
  });
});

describe("the dashboard, for agent streams in full (OpenAI fixture upstream)", () => {
  let fixture: OpenAIFixture;
  beforeAll(async () => {
    fixture = await startOpenAIFixture();
  });
  afterAll(async () => {
    await fixture?.close();
  });

  it("reasoning_content then the answer: each exactly in its own place", async () => {
    const gateway = await startGateway(fixtureEnv(fixture));
    const { page, errors } = await openDashboard(`${gateway.url}/`);
    // The closed block's peek shows the last 60 characters: here they begin inside the emoji.
    const reasoning = [
      "The user",
      ' wants a "word".',
      "\n\nPick one: é🎉",
      " then say it plainly, in one short word, and stop it there.",
    ];
    expect(reasoning.join("").at(-60)).toBe("🎉".at(1));
    const answer = ["Hello", "\n", " world", ", in", " short."];
    fixture.script({ steps: reasoningSteps(reasoning, answer), delayMs: FIXTURE_FRAME_MS });
    const id = await create(gateway.url, { message: "a word", reasoning_effort: "high" });
    await waitForStatus(page, id, "done");

    const truth = await sessionParts(gateway.url, id);
    expect(truth).toMatchObject({ reasoning: reasoning.join(""), text: answer.join(""), terminal: "done" });
    const view = await panelView(page, id);
    expectApart(view, await seenStates(page, id), truth);
    expect(view.model).toBe("gpt-test");
    // The peek: the reasoning's latest words, never half a character.
    expect(view.peek.startsWith("…")).toBe(true);
    expect(truth.reasoning.replace(/\s+/g, " ").endsWith(view.peek.slice(1))).toBe(true);
    expect(view.peek).not.toMatch(LONE_SURROGATE);
    expect(errors).toEqual([]);
  });

  it("a refusal shows as a refusal, in the answer's place, with no answer, reasoning or tool call", async () => {
    const gateway = await startGateway(fixtureEnv(fixture));
    const { page, errors } = await openDashboard(`${gateway.url}/`);
    const parts = ["I'm sorry,", " but I can't", " help with that."];
    fixture.script({ steps: refusalSteps(parts), delayMs: FIXTURE_FRAME_MS });
    const id = await create(gateway.url, { message: "something bad" });
    await waitForStatus(page, id, "done");

    const truth = await sessionParts(gateway.url, id);
    expect(truth).toMatchObject({ refusal: parts.join(""), text: "", reasoning: "", terminal: "done" });
    const view = await panelView(page, id);
    expect(view.refusal).toBe(truth.refusal);
    expect(view.refusalHidden).toBe(false);
    expect(view.refusalShown).toBe(true);
    expect(view.refusalLabel).toBe('"Refused: "');
    expect(view.noAnswer).toBe(true);
    expect(view.answer).toBe("");
    expect(view.answerShown).toBe(false);
    expect(view.thinkingHidden).toBe(true);
    expect(view.toolsHidden).toBe(true);
    expect(view.calls).toEqual([]);
    // It streamed in: every refusal the page showed was a beginning of the whole one.
    const refusals = distinct((await seenStates(page, id)).map((state) => state.refusal));
    for (const seen of refusals) expect(truth.refusal.startsWith(seen)).toBe(true);
    expect(refusals.at(-1)).toBe(truth.refusal);
    expect(errors).toEqual([]);
  });

  it("two parallel tool calls: each with its name and streaming arguments, in order, never mixed", async () => {
    const gateway = await startGateway(fixtureEnv(fixture));
    const { page, errors } = await openDashboard(`${gateway.url}/`);
    const paris = ['{"city":', '"Paris",', '"country":', '"France",', '"unit":"celsius",', '"days":2}'];
    const oslo = ['{"city":', '"Oslo",', '"country":', '"Norway",', '"unit":"celsius",', '"days":5}'];
    fixture.script({
      steps: toolCallSteps([
        { id: "call_1", name: "get_weather", args: paris },
        { id: "call_2", name: "get_weather", args: oslo },
      ]),
      finishReason: "tool_calls",
      delayMs: FIXTURE_FRAME_MS,
    });
    const id = await create(gateway.url, {
      message: "Paris and Oslo?",
      tools: [WEATHER_TOOL],
      parallel_tool_calls: true,
    });
    await page.waitForSelector(
      `.panel[data-session-id="${id}"] .tool-call[data-index="1"][data-state="streaming"]`,
      {
        timeout: WAIT_MS,
      },
    );
    await waitForStatus(page, id, "done");

    const truth = await sessionParts(gateway.url, id);
    const whole = [paris.join(""), oslo.join("")];
    expect(truth.calls).toEqual([
      { index: 0, id: "call_1", name: "get_weather", arguments: whole[0] },
      { index: 1, id: "call_2", name: "get_weather", arguments: whole[1] },
    ]);
    const view = await panelView(page, id);
    expect(view.calls).toEqual([
      { index: "0", state: "complete", callId: "call_1", name: "get_weather", args: whole[0] },
      { index: "1", state: "complete", callId: "call_2", name: "get_weather", args: whole[1] },
    ]);
    expect(view.toolsShown).toBe(true);
    expect(view.noAnswer).toBe(true);
    expect(view.answer).toBe("");
    expect(view.summary).toContain("2 tool calls");

    const states = await seenStates(page, id);
    for (const state of states) {
      // In index order; each call's arguments only ever a beginning of its own.
      expect(state.calls.map((c) => c.index)).toEqual([0, 1].slice(0, state.calls.length));
      for (const c of state.calls) {
        expect(c.name).toBe("get_weather");
        expect(whole[c.index]!.startsWith(c.args)).toBe(true);
      }
      // Call 1 starts only once call 0 is whole.
      if (state.calls.length === 2)
        expect(state.calls[0]).toMatchObject({ state: "complete", args: whole[0] });
    }
    for (const index of [0, 1]) {
      const partial = states.some((state) =>
        state.calls.some(
          (c) => c.index === index && c.state === "streaming" && c.args.length > 0 && c.args !== whole[index],
        ),
      );
      expect(partial, `call ${index} seen part-way`).toBe(true);
    }
    expect(errors).toEqual([]);
  });
});

describe("the dashboard of one instance, for a run on another (same Redis)", () => {
  let fixture: OpenAIFixture;
  beforeAll(async () => {
    fixture = await startOpenAIFixture();
  });
  afterAll(async () => {
    await fixture?.close();
  });

  it("shows the other instance's reasoning apart, its tool call streaming, and a fixture run's reasoning apart from its answer", async () => {
    const env = { ...fixtureEnv(fixture), REDIS_KEY_PREFIX: randomPrefix() };
    const runner = await startGateway(env);
    const viewer = await startGateway(env);
    const { page, errors } = await openDashboard(`${viewer.url}/`);

    // The simulated model on the runner: it thinks, then calls the tool, slowly.
    const callId = await create(runner.url, {
      model: "simulated",
      message: "What is the weather in Porto",
      tools: [WEATHER_TOOL],
      reasoning_effort: "low",
    });
    await page.waitForSelector(`.panel[data-session-id="${callId}"] .tool-call[data-state="streaming"]`, {
      timeout: WAIT_MS,
    });
    await waitForStatus(page, callId, "done");
    const callTruth = await sessionParts(runner.url, callId);
    expect(await sessionParts(viewer.url, callId)).toEqual(callTruth);
    expect(callTruth.call?.name).toBe("get_weather");
    const callView = await panelView(page, callId);
    expect(callView.model).toBe("simulated");
    expect(callView.thinkingShown).toBe(true);
    expect(callView.reasoning).toBe(callTruth.reasoning);
    expect(callView.reasoning.length).toBeGreaterThan(0);
    expect(callView.answer).toBe("");
    expect(callView.calls).toEqual([
      {
        index: "0",
        state: "complete",
        callId: callTruth.call!.id,
        name: "get_weather",
        args: callTruth.call!.arguments,
      },
    ]);
    const callStates = await seenStates(page, callId);
    expectStreamedCall(callStates, callTruth.call!);
    // The reasoning was whole before the call began, and never went into the call or the answer.
    for (const state of callStates) {
      if (state.calls.length > 0) expect(state.reasoning).toBe(callTruth.reasoning);
      expect(state.answer).toBe("");
    }

    // The fixture upstream on the runner: reasoning then an answer.
    const reasoning = ["Porto is", " in Portugal;", "\nanswer briefly."];
    const answer = ["Mild", " and", " sunny", " today."];
    fixture.script({ steps: reasoningSteps(reasoning, answer, "reasoning"), delayMs: FIXTURE_FRAME_MS });
    const textId = await create(runner.url, { message: "And tomorrow?", reasoning_effort: "low" });
    await waitForStatus(page, textId, "done");
    const textTruth = await sessionParts(runner.url, textId);
    expect(textTruth).toMatchObject({ reasoning: reasoning.join(""), text: answer.join("") });
    const textView = await panelView(page, textId);
    expectApart(textView, await seenStates(page, textId), textTruth);
    expect(textView.model).toBe("gpt-test");
    expect(errors).toEqual([]);
  });
});
