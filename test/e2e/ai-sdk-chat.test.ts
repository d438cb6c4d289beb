/**
 * The AI SDK door in Chromium: a minimal page built on the AI SDK's framework-free chat class
 * (`AbstractChat` with a plain state, as the framework packages build their `Chat`), bundled for the
 * browser with esbuild, that resumes on load (what `useChat({resume: true})` does: `resumeStream()`).
 * The page is reloaded mid-run and still ends with the whole answer.
 */
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { type GatewayProcess, randomPrefix, startGatewayProcess } from "../helpers/index.js";
import { launchChromium, watchErrors } from "./helpers/browser.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The page's script: the chat, its state kept in sessionStorage (an app keeps it on its server). */
const PAGE_SCRIPT = `
import { AbstractChat, DefaultChatTransport } from "ai";

const chatId = new URL(location.href).searchParams.get("chat");
const storeKey = "messages:" + chatId;
const render = () => {
  document.querySelector("#status").textContent = chat.status;
  const last = chat.messages.at(-1);
  document.querySelector("#answer").textContent =
    last && last.role === "assistant" ? last.parts.filter((p) => p.type === "text").map((p) => p.text).join("") : "";
  document.querySelector("#message-id").textContent = last && last.role === "assistant" ? last.id : "";
};

class PlainState {
  constructor(messages) { this.messages = messages; this.status = "ready"; this.error = undefined; }
  pushMessage(message) { this.messages = this.messages.concat(message); queueMicrotask(render); }
  popMessage() { this.messages = this.messages.slice(0, -1); queueMicrotask(render); }
  replaceMessage(index, message) { this.messages = this.messages.map((m, i) => (i === index ? message : m)); queueMicrotask(render); }
  snapshot(value) { return structuredClone(value); }
}

class Chat extends AbstractChat {
  constructor(init) { super({ ...init, state: new PlainState(init.messages ?? []) }); }
  setStatus(update) { super.setStatus(update); queueMicrotask(render); }
}

const stored = JSON.parse(sessionStorage.getItem(storeKey) ?? "[]");
const chat = new Chat({
  id: chatId,
  messages: stored,
  transport: new DefaultChatTransport({ api: "/api/v1/chat", body: { model: "simulated" } }),
  onError: (error) => { document.querySelector("#error").textContent = String(error); },
});
window.chat = chat;
render();

const prompt = new URL(location.href).searchParams.get("send");
if (prompt && stored.length === 0) {
  const user = { id: "u1", role: "user", parts: [{ type: "text", text: prompt }] };
  sessionStorage.setItem(storeKey, JSON.stringify([user]));
  chat.sendMessage(user);
} else {
  // resume: true
  chat.resumeStream();
}
`;

const PAGE_HTML = `<!doctype html><meta charset="utf-8"><title>chat</title>
<p>status: <span id="status"></span> <span id="error"></span></p>
<p id="message-id"></p><p id="answer"></p>
<script type="module" src="/door-test/chat.js"></script>`;

let gateway: GatewayProcess;
let browser: Browser;
let bundle: string;

beforeAll(async () => {
  const [started, launched, built] = await Promise.all([
    startGatewayProcess(
      {
        REDIS_URL: inject("redisUrl"),
        REDIS_KEY_PREFIX: randomPrefix(),
        LOG_LEVEL: "warn",
        SIMULATED_TOKENS_PER_SECOND: "40",
      },
      { healthTimeoutMs: 60_000 },
    ),
    launchChromium(),
    build({
      stdin: { contents: PAGE_SCRIPT, resolveDir: REPO_ROOT, loader: "js" },
      bundle: true,
      format: "esm",
      platform: "browser",
      write: false,
      logLevel: "silent",
    }),
  ]);
  gateway = started;
  browser = launched;
  bundle = built.outputFiles[0]!.text;
});

afterAll(async () => {
  await browser?.close();
  await gateway?.stop();
});

it("a page using the AI SDK's Chat with resume, reloaded mid-run, ends with the whole answer", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = watchErrors(page);
  // The page and its bundle, served on the gateway's origin (the door needs no CORS then).
  await page.route(`${gateway.url}/door-test/**`, (route) =>
    route.fulfill(
      route.request().url().endsWith(".js")
        ? { contentType: "text/javascript", body: bundle }
        : { contentType: "text/html", body: PAGE_HTML },
    ),
  );
  const chatId = `chat-${Date.now()}`;
  await page.goto(
    `${gateway.url}/door-test/chat.html?chat=${chatId}&send=${encodeURIComponent("tell me [tokens=120]")}`,
  );
  await page.waitForFunction(
    () => (document.querySelector("#answer")?.textContent ?? "").split(" ").length > 10,
  );
  const before = await page.textContent("#answer");

  await page.reload();
  await page.waitForFunction(() => document.querySelector("#status")?.textContent === "streaming");
  await page.waitForFunction(() => document.querySelector("#status")?.textContent === "ready", undefined, {
    timeout: 60_000,
  });
  const answer = (await page.textContent("#answer")) ?? "";
  const messageId = (await page.textContent("#message-id")) ?? "";
  const whole = (await (await fetch(`${gateway.url}/v1/responses/resp_${messageId}`)).json()) as {
    status: string;
    output_text: string;
  };
  expect(whole.status).toBe("completed");
  expect(answer).toBe(whole.output_text);
  expect(answer.startsWith(before ?? "")).toBe(true);
  expect(answer.length).toBeGreaterThan((before ?? "").length);
  expect(errors).toEqual([]);
  await context.close();
});
