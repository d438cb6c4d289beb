/**
 * Reading a session's panel on the dashboard (reasoning, answer, refusal, tool calls) and the truth it
 * must show: the session as a reader of its stream assembles it. For the agent-events e2e tests.
 */
import type { Page } from "playwright-core";
import { collectUntilClosed } from "../../helpers/index.js";

const WAIT_MS = 30_000;

/** What a panel shows at one moment, as recorded while it streams. */
export interface PanelState {
  reasoning: string;
  answer: string;
  refusal: string;
  calls: Array<{ index: number; state: string; name: string; args: string }>;
}

export async function waitForStatus(page: Page, id: string, status: string): Promise<void> {
  await page.waitForSelector(`.panel[data-session-id="${id}"][data-status="${status}"]`, {
    timeout: WAIT_MS,
  });
}

/** What the panel shows, read from the DOM, with what is visible and how its parts nest. */
export function panelView(page: Page, id: string) {
  return page.evaluate((id) => {
    const panel = document.querySelector<HTMLElement>(`.panel[data-session-id="${id}"]`)!;
    const thinking = panel.querySelector<HTMLDetailsElement>(".thinking")!;
    const textEl = panel.querySelector<HTMLElement>(".text")!;
    const refusalEl = panel.querySelector<HTMLElement>(".refusal")!;
    const toolsEl = panel.querySelector<HTMLElement>(".tool-calls")!;
    const shown = (el: Element) => el.getClientRects().length > 0;
    return {
      thinkingHidden: thinking.hidden,
      thinkingShown: shown(thinking),
      /** The whole Thinking block: its label, the peek at its latest words, the reasoning. */
      thinkingText: thinking.textContent ?? "",
      /** The closed block's summary: the latest words of the reasoning. */
      peek: panel.querySelector(".thinking-peek")?.textContent ?? "",
      reasoning: panel.querySelector(".reasoning-text")?.textContent ?? "",
      answer: textEl.textContent ?? "",
      answerShown: shown(textEl),
      /** Neither the answer area nor the Thinking block holds the other. */
      apart: !textEl.contains(thinking) && !thinking.contains(textEl),
      refusal: refusalEl.textContent ?? "",
      refusalHidden: refusalEl.hidden,
      refusalShown: shown(refusalEl),
      refusalLabel: getComputedStyle(refusalEl, "::before").content,
      noAnswer: panel.classList.contains("no-answer"),
      summary: panel.querySelector(".summary")?.textContent ?? "",
      model: panel.querySelector('[data-stat="model"]')?.textContent ?? "",
      calls: [...panel.querySelectorAll<HTMLElement>(".tool-call")].map((li) => ({
        index: li.dataset.index,
        state: li.dataset.state,
        callId: li.dataset.callId,
        name: li.querySelector(".tool-name")?.textContent,
        args: li.querySelector(".tool-args")?.textContent,
      })),
      toolsHidden: toolsEl.hidden,
      toolsShown: shown(toolsEl),
    };
  }, id);
}

/**
 * Records every distinct state of every panel from now on (read back with `seenStates`): what the
 * page showed while a run streamed, not just where it ended.
 */
export async function recordPanels(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: Record<string, string[]> = {};
    (window as unknown as { panelStates: Record<string, string[]> }).panelStates = seen;
    new MutationObserver(() => {
      for (const el of document.querySelectorAll<HTMLElement>(".panel")) {
        const id = el.dataset.sessionId ?? "";
        const state = JSON.stringify({
          reasoning: el.querySelector(".reasoning-text")?.textContent ?? "",
          answer: el.querySelector(".text")?.textContent ?? "",
          refusal: el.querySelector(".refusal")?.textContent ?? "",
          calls: [...el.querySelectorAll<HTMLElement>(".tool-call")].map((li) => ({
            index: Number(li.dataset.index),
            state: li.dataset.state ?? "",
            name: li.querySelector(".tool-name")?.textContent ?? "",
            args: li.querySelector(".tool-args")?.textContent ?? "",
          })),
        });
        const list = seen[id] ?? [];
        seen[id] = list;
        if (list.at(-1) !== state) list.push(state);
      }
    }).observe(document.getElementById("views")!, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
    });
  });
}

/** The distinct states `recordPanels` saw of a session's panel, in order. */
export async function seenStates(page: Page, id: string): Promise<PanelState[]> {
  const states = await page.evaluate(
    (id) => (window as unknown as { panelStates: Record<string, string[]> }).panelStates[id] ?? [],
    id,
  );
  return states.map((state) => JSON.parse(state) as PanelState);
}

/** Each distinct text one field took in `states`, in order. */
export function distinct(values: string[]): string[] {
  return values.filter((value, i) => i === 0 || values[i - 1] !== value);
}

export interface StreamedCall {
  index: number;
  id: string;
  name: string;
  arguments: string;
}

/** The session as a reader of its stream assembles it (the truth the panel must show). */
export async function sessionParts(gatewayUrl: string, id: string) {
  const stream = await collectUntilClosed(`${gatewayUrl}/api/v1/sessions/${id}/stream`, {
    timeoutMs: WAIT_MS,
  });
  let reasoning = "";
  let text = "";
  let refusal = "";
  let terminal = "";
  const calls = new Map<number, StreamedCall>();
  for (const event of stream.events) {
    const data = JSON.parse(event.data);
    switch (event.event) {
      case "snapshot":
        reasoning = data.reasoning;
        text = data.content;
        refusal = data.refusal ?? "";
        for (const call of data.tool_calls) calls.set(call.index, call);
        break;
      case "reasoning":
        reasoning += data.content;
        break;
      case "token":
        text += data.content;
        break;
      case "refusal":
        refusal += data.content;
        break;
      case "tool_call":
        calls.set(data.index, data);
        break;
      case "done":
      case "error":
      case "cancelled":
        terminal = event.event;
        break;
    }
  }
  const ordered = [...calls.values()].sort((a, b) => a.index - b.index);
  return { reasoning, text, refusal, calls: ordered, call: ordered[0], terminal };
}
