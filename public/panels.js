// @ts-check
/**
 * The panels: one per session, in a grid of fixed-size cards (streaming text scrolls inside its card,
 * so nothing moves while tokens arrive). A finished panel collapses into the "Finished" list after a
 * while (the page's setting), unless the user is inside it or expanded it.
 */
import { FINAL, timeToFirstToken, tokenCount, tokensPerSecond } from "./model.js";

/** @typedef {import("./model.js").Session} Session */
/** @typedef {import("./model.js").Change} Change */
/** @typedef {import("./model.js").Model} Model */

/** Characters of reasoning shown in a closed "Thinking" block's summary. */
const PEEK_CHARS = 60;

const STATUS_LABEL = /** @type {Record<string, string>} */ ({
  running: "running",
  done: "done",
  error: "error",
  cancelled: "cancelled",
  interrupted: "interrupted",
  unknown: "not found",
});

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string>} [attrs]
 * @param {Array<Node | string>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") el.className = value;
    else el.setAttribute(name, value);
  }
  for (const child of children) el.append(child);
  return el;
}

/** @param {number} ms */
export function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}\u202fs`;
  if (s < 3600) return `${Math.floor(s / 60)}\u202fmin`;
  if (s < 86_400) return `${Math.floor(s / 3600)}\u202fh`;
  return `${Math.floor(s / 86_400)}\u202fd`;
}

/** A collapsed panel's one line. @param {Session} session */
function summaryOf(session) {
  const calls = session.toolCalls.length;
  const tools = calls === 0 ? "" : `, ${calls} tool call${calls === 1 ? "" : "s"}`;
  return `${tokenCount(session)} tokens${tools}`;
}

/** @param {number | null} ms */
function formatLatency(ms) {
  if (ms === null) return "—";
  return ms < 1000 ? `${Math.round(ms)}\u202fms` : `${(ms / 1000).toFixed(1)}\u202fs`;
}

class Panel {
  /**
   * @param {Session} session
   * @param {(id: string) => Promise<void>} onCancel
   * @param {(panel: Panel, expanded: boolean) => void} onToggle
   */
  constructor(session, onCancel, onToggle) {
    const id = session.id;
    this.id = id;
    this.collapsed = false;
    /** The user expanded it: it stays open. */
    this.pinned = false;
    this.out = document.createTextNode(session.text);
    this.statusEl = h("span", { class: "badge", "data-role": "status" });
    this.cancelButton = h(
      "button",
      { type: "button", class: "cancel", "aria-label": `Cancel session ${id}` },
      ["Cancel"],
    );
    this.toggleButton = h(
      "button",
      { type: "button", class: "toggle", "aria-expanded": "true", hidden: "" },
      ["Collapse"],
    );
    this.toggleButton.setAttribute("aria-label", `Collapse session ${id}`);
    /** @type {Record<string, HTMLElement>} */
    this.stats = {};
    const stat = (/** @type {string} */ key, /** @type {string} */ label, /** @type {string} */ title) => {
      const dd = h("dd", { "data-stat": key }, ["—"]);
      this.stats[key] = dd;
      return h("div", { class: `stat stat-${key}`, title }, [h("dt", {}, [label]), dd]);
    };
    this.textEl = h("div", {
      class: "text",
      tabindex: "0",
      role: "region",
      "aria-label": `Output of session ${id}`,
    });
    this.textEl.append(this.out);
    // Reasoning apart from the answer: a collapsed block whose summary shows the latest words.
    this.reasoningOut = document.createTextNode("");
    this.thinkingPeek = h("span", { class: "thinking-peek" });
    this.thinking = h("details", { class: "thinking", hidden: "" }, [
      h("summary", {}, [h("span", { class: "thinking-label" }, ["Thinking"]), this.thinkingPeek]),
      h("div", { class: "reasoning-text", role: "region", "aria-label": `Reasoning of session ${id}` }, [
        this.reasoningOut,
      ]),
    ]);
    this.refusalEl = h("p", { class: "refusal", hidden: "" });
    this.toolCallsEl = h("ol", { class: "tool-calls", hidden: "", "aria-label": `Tool calls of session ${id}` });
    /** @type {Map<number, {li: HTMLLIElement, name: HTMLElement, args: Text}>} */
    this.toolItems = new Map();
    this.note = h("p", { class: "note", hidden: "" });
    this.summary = h("span", { class: "summary" });
    this.el = h(
      "article",
      { class: "panel", id: `panel-${id}`, "data-session-id": id, "aria-labelledby": `title-${id}` },
      [
        h("header", { class: "panel-head" }, [
          this.statusEl,
          h("h3", { class: "panel-title", id: `title-${id}`, title: id }, [id]),
          this.summary,
          this.cancelButton,
          this.toggleButton,
        ]),
        h("dl", { class: "stats" }, [
          stat("model", "Model", "Model"),
          stat("tokens", "Tokens", "Tokens received"),
          stat("tps", "Tok/s", "Tokens per second, after the first token"),
          stat("ttft", "TTFT", "Time to first token, from the session's creation as this page saw it"),
          stat("age", "Age", "Time since the session was created"),
        ]),
        this.thinking,
        this.textEl,
        this.refusalEl,
        this.toolCallsEl,
        this.note,
      ],
    );
    this.cancelButton.addEventListener("click", () => {
      this.cancelButton.disabled = true;
      this.cancelButton.textContent = "Cancelling…";
      onCancel(id).catch((/** @type {unknown} */ error) => {
        this.cancelButton.disabled = false;
        this.cancelButton.textContent = "Cancel";
        this.showNote(`Could not cancel: ${error instanceof Error ? error.message : String(error)}`);
      });
    });
    this.toggleButton.addEventListener("click", () => onToggle(this, this.collapsed));
    this.update(session);
  }

  /** @param {string} message */
  showNote(message) {
    this.note.textContent = message;
    this.note.title = message;
    this.note.hidden = false;
  }

  /** @param {Session} session */
  update(session) {
    const { status } = session;
    if (this.el.dataset.status !== status) {
      this.el.dataset.status = status;
      this.statusEl.textContent = STATUS_LABEL[status] ?? status;
      const final = FINAL.has(status);
      this.cancelButton.hidden = final;
      this.toggleButton.hidden = !final;
    }
    if (this.stats.model.textContent !== (session.model || "—")) {
      this.stats.model.textContent = session.model || "—";
      this.stats.model.title = session.model;
    }
    // A snapshot replaced the text (tokens only ever append).
    if (this.out.data !== session.text) this.out.data = session.text;
    this.updateReasoning(session);
    this.updateToolCalls(session);
    if (this.refusalEl.textContent !== session.refusal) {
      this.refusalEl.textContent = session.refusal;
      this.refusalEl.title = session.refusal;
      this.refusalEl.hidden = session.refusal === "";
    }
    this.el.classList.toggle("rich", session.reasoning !== "" || session.toolCalls.length > 0);
    // A run that only called tools (or refused) has no answer: its calls take the answer's place.
    const noAnswer = session.text === "" && (session.toolCalls.length > 0 || session.refusal !== "");
    this.el.classList.toggle("no-answer", noAnswer);
    this.updateCounters(session);
    this.summary.textContent = summaryOf(session);
    const notes = [];
    if (session.status === "interrupted") notes.push("Interrupted: the instance running it stopped.");
    else if (session.errorCode) notes.push(`Error ${session.errorCode}: ${session.errorMessage ?? ""}`);
    if (session.status === "cancelled")
      notes.push(`Cancelled${session.cancelReason ? ` (${session.cancelReason})` : ""}.`);
    if (session.status === "unknown") notes.push("No such session (yet): it may have expired.");
    if (session.gaps > 0)
      notes.push("Gap: part of this session's history was trimmed before it could be shown.");
    if (notes.length > 0) this.showNote(notes.join(" "));
    else this.note.hidden = true;
    this.el.classList.toggle("has-gap", session.gaps > 0);
  }

  /** @param {Session} session */
  updateReasoning(session) {
    if (this.reasoningOut.data === session.reasoning) return;
    const box = /** @type {HTMLElement} */ (this.thinking.lastElementChild);
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    this.reasoningOut.data = session.reasoning;
    this.thinking.hidden = session.reasoning === "";
    // The latest words, so that a closed block still shows the reasoning moving.
    let tail = session.reasoning.slice(-PEEK_CHARS);
    // Never half a character: a cut through a surrogate pair (an emoji) would show as "�".
    if (/^[\uDC00-\uDFFF]/.test(tail)) tail = tail.slice(1);
    tail = tail.replace(/\s+/g, " ");
    this.thinkingPeek.textContent = session.reasoning.length > PEEK_CHARS ? `…${tail}` : tail;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  /** Each call with its name and its arguments as they stream. @param {Session} session */
  updateToolCalls(session) {
    const final = FINAL.has(session.status);
    for (const call of session.toolCalls) {
      let item = this.toolItems.get(call.index);
      if (!item) {
        const name = h("span", { class: "tool-name" });
        const args = document.createTextNode("");
        const li = h("li", { class: "tool-call", "data-index": String(call.index) }, [
          name,
          h("code", { class: "tool-args" }, [args]),
        ]);
        item = { li, name, args };
        this.toolItems.set(call.index, item);
        const next = [...this.toolItems.keys()].filter((index) => index > call.index).sort((a, b) => a - b)[0];
        const before = next === undefined ? null : (this.toolItems.get(next)?.li ?? null);
        this.toolCallsEl.insertBefore(li, before);
      }
      if (item.name.textContent !== call.name) item.name.textContent = call.name || "…";
      if (item.args.data !== call.arguments) item.args.data = call.arguments;
      const state = call.complete || final ? "complete" : "streaming";
      if (item.li.dataset.state !== state) item.li.dataset.state = state;
      if (call.id !== null && item.li.dataset.callId !== call.id) item.li.dataset.callId = call.id;
    }
    for (const [index, item] of this.toolItems) {
      if (session.toolCalls.some((call) => call.index === index)) continue;
      item.li.remove();
      this.toolItems.delete(index);
    }
    this.toolCallsEl.hidden = session.toolCalls.length === 0;
  }

  /** @param {Session} session */
  updateCounters(session) {
    this.stats.tokens.textContent = String(tokenCount(session));
    const tps = tokensPerSecond(session);
    this.stats.tps.textContent = tps === null ? "—" : tps.toFixed(1);
    this.stats.ttft.textContent = formatLatency(timeToFirstToken(session));
  }

  /** @param {Session} session @param {number} now */
  updateAge(session, now) {
    const created = session.createdAt ? Date.parse(session.createdAt) : Number.NaN;
    this.stats.age.textContent = Number.isNaN(created) ? "—" : formatDuration(now - created);
  }

  /** @param {string} content */
  append(content) {
    const box = this.textEl;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    this.out.appendData(content);
    if (this.el.classList.contains("no-answer")) this.el.classList.remove("no-answer");
    if (atBottom && !this.collapsed) box.scrollTop = box.scrollHeight;
  }

  /** @param {boolean} collapsed */
  setCollapsed(collapsed) {
    this.collapsed = collapsed;
    this.el.classList.toggle("collapsed", collapsed);
    this.toggleButton.textContent = collapsed ? "Expand" : "Collapse";
    this.toggleButton.setAttribute("aria-expanded", String(!collapsed));
    this.toggleButton.setAttribute("aria-label", `${collapsed ? "Expand" : "Collapse"} session ${this.id}`);
    if (!collapsed) this.textEl.scrollTop = this.textEl.scrollHeight;
  }
}

export class PanelView {
  /**
   * @param {{grid: HTMLElement, finished: HTMLElement, finishedSection: HTMLElement, empty: HTMLElement}} elements
   * @param {{onCancel(id: string): Promise<void>}} actions
   */
  constructor(elements, actions) {
    this.grid = elements.grid;
    this.finished = elements.finished;
    this.finishedSection = elements.finishedSection;
    this.empty = elements.empty;
    this.actions = actions;
    /** @type {Map<string, Panel>} */
    this.panels = new Map();
    /** ms after its end before a finished panel collapses; 0: never */
    this.collapseAfterMs = 30_000;
  }

  /** @param {Session} session */
  create(session) {
    const panel = new Panel(
      session,
      (id) => this.actions.onCancel(id),
      (p, expand) => {
        p.pinned = expand;
        if (expand) p.setCollapsed(false);
        else this.collapse(p);
        p.toggleButton.focus();
      },
    );
    this.panels.set(session.id, panel);
    this.grid.append(panel.el);
    panel.updateAge(session, Date.now());
    return panel;
  }

  /** @param {Panel} panel */
  collapse(panel) {
    panel.setCollapsed(true);
    if (panel.el.parentElement !== this.finished) this.finished.prepend(panel.el);
    this.finishedSection.hidden = false;
  }

  /**
   * @param {Change} change
   * @param {Model} model
   */
  render(change, model) {
    if (change.reset) this.rebuild(model);
    for (const id of change.dropped) {
      this.panels.get(id)?.el.remove();
      this.panels.delete(id);
    }
    for (const id of change.ids) {
      const session = model.sessions.get(id);
      if (!session) continue;
      const panel = this.panels.get(id);
      if (!panel) {
        this.create(session);
        continue;
      }
      if (change.appendedTo === id) {
        panel.append(change.appended);
        panel.updateCounters(session);
        panel.summary.textContent = summaryOf(session);
      } else {
        panel.update(session);
      }
    }
    if (change.added.length > 0 || change.dropped.length > 0 || change.reset) this.updateEmpty(model);
  }

  /** Every panel again from the model (a snapshot from another tab, a reset). @param {Model} model */
  rebuild(model) {
    for (const panel of this.panels.values()) panel.el.remove();
    this.panels.clear();
    for (const session of model.sessions.values()) this.create(session);
    this.updateEmpty(model);
  }

  /** @param {Model} model */
  updateEmpty(model) {
    this.empty.hidden = model.sessions.size > 0;
    this.finishedSection.hidden = this.finished.childElementCount === 0;
  }

  /** Once a second: ages, and collapsing finished panels. @param {Model} model @param {number} now */
  tick(model, now) {
    for (const [id, panel] of this.panels) {
      const session = model.sessions.get(id);
      if (!session) continue;
      if (!panel.collapsed) panel.updateAge(session, now);
      if (
        this.collapseAfterMs > 0 &&
        !panel.collapsed &&
        !panel.pinned &&
        session.endedAt !== null &&
        FINAL.has(session.status) &&
        now - session.endedAt >= this.collapseAfterMs &&
        !panel.el.contains(document.activeElement) &&
        !panel.el.matches(":hover")
      ) {
        this.collapse(panel);
      }
    }
  }
}

/** Polite announcements for screen readers: session status changes and the connection, never tokens. */
export class Announcer {
  /** @param {HTMLElement} region an aria-live="polite" element */
  constructor(region) {
    this.region = region;
    /** @type {string[]} */
    this.queue = [];
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
  }

  /** @param {string} message */
  say(message) {
    this.queue.push(message);
    this.timer ??= setTimeout(() => this.flush(), 400);
  }

  flush() {
    this.timer = null;
    const messages = this.queue.splice(0);
    if (messages.length === 0) return;
    this.region.textContent =
      messages.length > 6
        ? `${messages.length} updates: ${messages.slice(-3).join(". ")}`
        : messages.join(". ");
  }
}
