/**
 * The dashboard (`GET /`) in Chromium against a built gateway process on a real Redis, for agent
 * streams in full: a run of the simulated model with tools and reasoning_effort shows its reasoning
 * apart from the answer (a "Thinking" block), its tool call's name and arguments as they stream, and
 * the answer to the tool's result; a compacted session's panel gets reasoning and the call back from
 * the snapshot.
 */
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { collectUntilClosed, type GatewayProcess, postJson, randomPrefix } from "../helpers/index.js";
import { ensureBuilt, launchChromium, startBuiltGateway, watchErrors } from "./helpers/browser.js";

const WAIT_MS = 30_000;
/** Slow enough that a call's arguments arrive over many frames the page can see one by one. */
const TOKENS_PER_SECOND = 10;

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

async function openDashboard(url: string): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(url);
  await page.waitForSelector("#connection[data-state='live']", { timeout: WAIT_MS });
  return { page, errors };
}

/** Every distinct text the page showed for call 0's arguments of a session, in order. */
async function recordArguments(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: Record<string, string[]> = {};
    (window as unknown as { argsSeen: Record<string, string[]> }).argsSeen = seen;
    new MutationObserver(() => {
      for (const el of document.querySelectorAll<HTMLElement>(".panel")) {
        const id = el.dataset.sessionId ?? "";
        const args = el.querySelector('.tool-call[data-index="0"] .tool-args')?.textContent;
        if (args === undefined || args === null) continue;
        const list = seen[id] ?? [];
        seen[id] = list;
        if (list.at(-1) !== args) list.push(args);
      }
    }).observe(document.getElementById("views")!, { subtree: true, childList: true, characterData: true });
  });
}

async function waitForStatus(page: Page, id: string, status: string): Promise<void> {
  await page.waitForSelector(`.panel[data-session-id="${id}"][data-status="${status}"]`, {
    timeout: WAIT_MS,
  });
}

/** What the panel shows, read from the DOM. */
function panelView(page: Page, id: string) {
  return page.evaluate((id) => {
    const panel = document.querySelector<HTMLElement>(`.panel[data-session-id="${id}"]`)!;
    const thinking = panel.querySelector<HTMLDetailsElement>(".thinking")!;
    return {
      thinkingHidden: thinking.hidden,
      reasoning: panel.querySelector(".reasoning-text")?.textContent ?? "",
      answer: panel.querySelector(".text")?.textContent ?? "",
      calls: [...panel.querySelectorAll<HTMLElement>(".tool-call")].map((li) => ({
        index: li.dataset.index,
        state: li.dataset.state,
        callId: li.dataset.callId,
        name: li.querySelector(".tool-name")?.textContent,
        args: li.querySelector(".tool-args")?.textContent,
      })),
      toolsHidden: panel.querySelector<HTMLElement>(".tool-calls")!.hidden,
    };
  }, id);
}

/** The session as a reader of its stream assembles it (the truth the panel must show). */
async function sessionParts(gatewayUrl: string, id: string) {
  const stream = await collectUntilClosed(`${gatewayUrl}/api/v1/sessions/${id}/stream`, {
    timeoutMs: WAIT_MS,
  });
  let reasoning = "";
  let text = "";
  let call: { id: string; name: string; arguments: string } | undefined;
  for (const event of stream.events) {
    const data = JSON.parse(event.data);
    if (event.event === "snapshot") {
      reasoning = data.reasoning;
      text = data.content;
      if (data.tool_calls[0]) call = data.tool_calls[0];
    }
    if (event.event === "reasoning") reasoning += data.content;
    if (event.event === "token") text += data.content;
    if (event.event === "tool_call") call = data;
  }
  return { reasoning, text, call };
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

describe("the dashboard, for agent streams in full", () => {
  it("shows reasoning apart, a tool call's name and streaming arguments, then the answer to its result", async () => {
    const gateway = await startGateway();
    const { page, errors } = await openDashboard(`${gateway.url}/`);
    await recordArguments(page);

    const created = await postJson(`${gateway.url}/api/v1/sessions`, {
      message: "What is the weather in Lisbon",
      tools: [WEATHER_TOOL],
      reasoning_effort: "low",
    });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;

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
    expect(view.answer).not.toContain(truth.reasoning.slice(0, 20));
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
    const seen = await page.evaluate(
      (id) => (window as unknown as { argsSeen: Record<string, string[]> }).argsSeen[id] ?? [],
      id,
    );
    expect(seen.length).toBeGreaterThan(3);
    for (const args of seen) expect(truth.call!.arguments.startsWith(args)).toBe(true);
    expect(seen.at(-1)).toBe(truth.call!.arguments);

    // The caller runs the tool and starts the next run with its result: the answer is text.
    const next = await postJson(`${gateway.url}/api/v1/sessions`, {
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
    expect(next.status, next.text).toBe(201);
    const answerId = next.body.id as string;
    await waitForStatus(page, answerId, "done");
    const answer = await panelView(page, answerId);
    expect(answer.answer.startsWith("(Simulated) get_weather returned 18 °C and windy.")).toBe(true);
    expect(answer.calls).toEqual([]);
    expect(answer.toolsHidden).toBe(true);
    expect(answer.thinkingHidden).toBe(true);
    expect(errors).toEqual([]);
  });

  it("a compacted session's panel gets its reasoning and tool call back from the snapshot", async () => {
    // Ten events kept: the run's reasoning and most of its call are folded into the snapshot.
    const gateway = await startGateway({ MAX_EVENTS_PER_SESSION: "10", SIMULATED_TOKENS_PER_SECOND: "1000" });
    const created = await postJson(`${gateway.url}/api/v1/sessions`, {
      message: "What is the weather in Quito",
      tools: [WEATHER_TOOL],
      reasoning_effort: "medium",
    });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
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
