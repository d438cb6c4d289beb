/**
 * The dashboard (`GET /`, public/) in Chromium against real gateway processes on a real Redis: many
 * agents on ONE SSE connection, a kill and restart of the gateway mid-stream, start and cancel from the
 * page, and several tabs sharing one connection. The tab and restart tests run over each of ORIGINS:
 * plain HTTP/1.1 straight to the gateway, and HTTP/2 over TLS through the system nginx running the
 * shipped config's HTTPS listener (a test certificate; Chromium runs with --ignore-certificate-errors);
 * each asserts the protocol the page negotiated (nextHopProtocol).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort, type GatewayProcess, randomPrefix, request } from "../helpers/index.js";
import {
  ensureBuilt,
  launchChromium,
  openSseConnections,
  sessionStatus,
  sessionText,
  startBuiltGateway,
  watchErrors,
} from "./helpers/browser.js";
import { type NginxHandle, startNginx } from "./helpers/nginx.js";

/** The README's screenshot, rewritten only when asked (`UPDATE_SCREENSHOT=1 npm run test:e2e`). */
const SCREENSHOT = new URL("../../docs/dashboard.png", import.meta.url);
const UPDATE_SCREENSHOT = process.env.UPDATE_SCREENSHOT === "1";
/**
 * A slow pace, so that 20 runs overlap for long (150 tokens ≈ 25 s): they are still going when the
 * control's EventSources open, even on a loaded machine, or those would only replay ended runs.
 */
const TOKENS_PER_SECOND = 6;
const RUNS = 20;
const TOKENS = 150;
/** Chromium's limit of connections per host on HTTP/1.1: the reason the dashboard multiplexes. */
const BROWSER_CONNECTIONS_PER_HOST = 6;
const WAIT_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Where the browser loads the page from. Node-side calls (starting runs, reading a session back,
 * /metrics) always go straight to the gateway.
 */
const ORIGINS = [
  { label: "HTTP/1.1 straight to the gateway", via: "direct", protocol: "http/1.1" },
  { label: "HTTP/2 over TLS through nginx", via: "nginx-tls", protocol: "h2" },
] as const;
type Origin = (typeof ORIGINS)[number];

let browser: Browser;
const gateways: GatewayProcess[] = [];
const contexts: BrowserContext[] = [];
const proxies: NginxHandle[] = [];

function gatewayEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: randomPrefix(),
    SIMULATED_TOKENS_PER_SECOND: String(TOKENS_PER_SECOND),
    // 20 runs at once from one address (open mode limits by IP).
    LIMIT_CONCURRENT_RUNS: "1000",
    LIMIT_RUNS_PER_MINUTE: "10000",
    LOG_LEVEL: "warn",
    ...overrides,
  };
}

async function startGateway(env: Record<string, string>): Promise<GatewayProcess> {
  const gateway = await startBuiltGateway(env);
  gateways.push(gateway);
  return gateway;
}

/** The page's base URL for a gateway: the gateway itself, or nginx's HTTPS listener in front of it. */
async function pageBase(origin: Origin, gateway: GatewayProcess): Promise<string> {
  if (origin.via === "direct") return gateway.url;
  const nginx = await startNginx({ upstreams: [`127.0.0.1:${gateway.port}`], tls: true });
  proxies.push(nginx);
  if (!nginx.httpsUrl) throw new Error("nginx started without its HTTPS listener");
  return nginx.httpsUrl;
}

/** The protocol the page's own load negotiated ("http/1.1", "h2"), as the browser reports it. */
async function negotiatedProtocol(page: Page): Promise<string> {
  return page.evaluate(
    () => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol,
  );
}

async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  contexts.push(context);
  return context;
}

interface Dashboard {
  page: Page;
  errors: string[];
}

async function openDashboard(context: BrowserContext, url: string): Promise<Dashboard> {
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(url);
  await page.waitForSelector("#tab-role[data-role]:not([data-role='starting'])");
  return { page, errors };
}

/** Resolves once the page's leader tab reports the connection live (a follower shows the leader's state). */
async function waitLive(page: Page): Promise<void> {
  try {
    await page.waitForSelector("#connection[data-state='live']", { timeout: WAIT_MS });
  } catch (error) {
    const state = await page
      .evaluate(
        () =>
          `${document.getElementById("tab-role")?.dataset.role}: ${document.getElementById("connection")?.textContent?.trim()}`,
      )
      .catch(() => "page gone");
    const exits = gateways.map((g) => g.logs().slice(-600)).join("\n---\n");
    throw new Error(`the page never went live (${state}); gateway log tails:\n${exits}`, { cause: error });
  }
}

function panel(page: Page, id: string) {
  return page.locator(`.panel[data-session-id="${id}"]`);
}

async function panelText(page: Page, id: string): Promise<string> {
  return (await panel(page, id).locator(".text").textContent()) ?? "";
}

async function waitForStatus(page: Page, id: string, statuses: string[], timeout = WAIT_MS): Promise<string> {
  const handle = await page.waitForFunction(
    ({ id, statuses }) => {
      const status = document.querySelector<HTMLElement>(`.panel[data-session-id="${id}"]`)?.dataset.status;
      return status !== undefined && statuses.includes(status) ? status : false;
    },
    { id, statuses },
    { timeout },
  );
  return (await handle.jsonValue()) as string;
}

async function leaderOf(pages: Page[]): Promise<Page[]> {
  const leaders: Page[] = [];
  for (const page of pages) {
    if ((await page.getAttribute("#tab-role", "data-role")) === "leader") leaders.push(page);
  }
  return leaders;
}

beforeAll(async () => {
  ensureBuilt();
  browser = await launchChromium();
}, 120_000);

afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close().catch(() => {});
  for (const gateway of gateways.splice(0)) await gateway.stop();
  for (const nginx of proxies.splice(0)) await nginx.stop();
});

afterAll(async () => {
  await browser?.close();
});

describe("the dashboard at /", () => {
  it("streams 20 runs into 20 panels at once on ONE SSE connection; 20 EventSources progress 6 at a time", async () => {
    const gateway = await startGateway(gatewayEnv());
    const { page, errors } = await openDashboard(await newContext(), `${gateway.url}/`);
    await waitLive(page);
    expect(await page.getAttribute("#tab-role", "data-role")).toBe("leader");
    // The first connection's catch-up (the empty history) is over once the page has been quiet a moment.
    await sleep(800);

    // In the page: when each panel first shows text (performance.now), without touching the dashboard.
    await page.evaluate(() => {
      const first: Record<string, number> = {};
      (window as unknown as { firstText: Record<string, number> }).firstText = first;
      new MutationObserver(() => {
        for (const el of document.querySelectorAll<HTMLElement>(".panel")) {
          const id = el.dataset.sessionId;
          if (id && first[id] === undefined && el.querySelector(".text")?.textContent)
            first[id] = performance.now();
        }
      }).observe(document.getElementById("views")!, { subtree: true, childList: true, characterData: true });
    });

    // 20 runs, started from the page one after another (a spread, not one burst, on a 2-core machine).
    const started = await page.evaluate(
      async ({ runs, tokens }) => {
        const out: Array<{ id: string; status: number; at: number }> = [];
        for (let i = 0; i < runs; i++) {
          const at = performance.now();
          const response = await fetch("/api/v1/sessions", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ message: `[tokens=${tokens}] Agent number ${i}, report.` }),
          });
          const body = (await response.json()) as { id: string };
          out.push({ id: body.id, status: response.status, at });
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return out;
      },
      { runs: RUNS, tokens: TOKENS },
    );
    expect(started.map((s) => s.status)).toEqual(Array(RUNS).fill(201));
    const ids = started.map((s) => s.id);

    await page.waitForFunction(
      (ids) => ids.every((id) => (window as unknown as { firstText: Record<string, number> }).firstText[id]),
      ids,
      { timeout: WAIT_MS },
    );
    const firstText = await page.evaluate(
      () => (window as unknown as { firstText: Record<string, number> }).firstText,
    );
    const timeToFirstText = started.map((s) => Math.round(firstText[s.id]! - s.at));
    console.log(
      `dashboard: first text in each of ${RUNS} panels, ms after its POST: ${timeToFirstText.join(" ")}`,
    );
    for (const ms of timeToFirstText) expect(ms).toBeLessThan(2000);

    // Every panel received text while all 20 runs were still going, and all keep growing together.
    const lengths = async () =>
      page.evaluate(
        (ids) =>
          ids.map((id) => ({
            status: document.querySelector<HTMLElement>(`.panel[data-session-id="${id}"]`)?.dataset.status,
            length: document.querySelector(`.panel[data-session-id="${id}"] .text`)?.textContent?.length ?? 0,
          })),
        ids,
      );
    const before = await lengths();
    expect(before.map((p) => p.status)).toEqual(Array(RUNS).fill("running"));
    await sleep(1200);
    const after = await lengths();
    for (let i = 0; i < RUNS; i++) expect(after[i]!.length).toBeGreaterThan(before[i]!.length);

    // ONE SSE connection on the server for the whole page.
    expect(await openSseConnections(gateway.url)).toBe(1);

    const screenshot = await page.screenshot({ fullPage: true });
    expect(screenshot.length).toBeGreaterThan(0);
    if (UPDATE_SCREENSHOT) {
      mkdirSync(new URL(".", SCREENSHOT), { recursive: true });
      writeFileSync(fileURLToPath(SCREENSHOT), screenshot);
    }

    // The control: 20 per-session EventSources in a fresh browser context (its own connection pool).
    const control = await (await newContext()).newPage();
    await control.goto(`${gateway.url}/healthz`);
    await control.evaluate((ids) => {
      const state = {
        opened: 0,
        streams: [] as Array<{ first: number | null; end: number | null; runningAtFirst: boolean }>,
        maxAtOnce: 0,
      };
      (window as unknown as { control: typeof state }).control = state;
      const t0 = performance.now();
      const atOnce = () => state.streams.filter((s) => s.first !== null && s.end === null).length;
      ids.forEach((id, i) => {
        const s = { first: null as number | null, end: null as number | null, runningAtFirst: false };
        state.streams[i] = s;
        const es = new EventSource(`/api/v1/sessions/${id}/stream`);
        const onEvent = (event: MessageEvent) => {
          if (s.first === null) {
            s.first = performance.now() - t0;
            s.runningAtFirst = event.type === "start" || event.type === "token";
          }
          state.maxAtOnce = Math.max(state.maxAtOnce, atOnce());
        };
        for (const type of ["start", "token", "usage"]) es.addEventListener(type, onEvent);
        for (const type of ["done", "error", "cancelled"]) {
          es.addEventListener(type, (event) => {
            // A connection-level "error" (no data) is not the session's error event.
            if (!(event instanceof MessageEvent)) return;
            onEvent(event);
            s.end = performance.now() - t0;
            es.close();
          });
        }
      });
    }, ids);
    await sleep(2000);
    const midway = await control.evaluate(() => {
      const { streams } = (window as unknown as { control: { streams: Array<{ first: number | null }> } })
        .control;
      return streams.filter((s) => s.first !== null).length;
    });
    const dashboardMidway = await lengths();
    await control.waitForFunction(
      () =>
        (window as unknown as { control: { streams: Array<{ end: number | null }> } }).control.streams.every(
          (s) => s.end !== null,
        ),
      undefined,
      { timeout: 60_000 },
    );
    const result = await control.evaluate(
      () =>
        (
          window as unknown as {
            control: { maxAtOnce: number; streams: Array<{ first: number | null; end: number | null }> };
          }
        ).control,
    );
    const firstEvents = result.streams.map((s) => s.first!).sort((a, b) => a - b);
    console.log(
      `control: ${RUNS} per-session EventSources over HTTP/1.1 in one page: ${midway} of ${RUNS} had received ` +
        `anything 2 s after opening (the dashboard meanwhile: ${dashboardMidway.filter((p) => p.length > 0).length} of ${RUNS} ` +
        `panels streaming on 1 connection); at most ${result.maxAtOnce} progressed at once; the last stream's first ` +
        `event came ${Math.round(firstEvents.at(-1)!)} ms after opening, once earlier streams had ended`,
    );
    // The comparison holds only while the runs go on (ended runs replay at once, whatever the limit).
    expect(dashboardMidway.map((p) => p.status)).toEqual(Array(RUNS).fill("running"));
    expect(midway).toBe(BROWSER_CONNECTIONS_PER_HOST);
    expect(result.maxAtOnce).toBe(BROWSER_CONNECTIONS_PER_HOST);

    // Every panel ends with exactly the session's text.
    for (const id of ids) await waitForStatus(page, id, ["done"]);
    for (const id of ids) {
      const { text, terminal } = await sessionText(gateway.url, id);
      expect(terminal).toBe("done");
      expect(await panelText(page, id)).toBe(text);
    }
    expect(errors).toEqual([]);
  });

  it("starts a run from the form, cancels it with the keyboard, filters by status and collapses it", async () => {
    const gateway = await startGateway(gatewayEnv());
    const { page, errors } = await openDashboard(await newContext(), `${gateway.url}/?collapseAfter=2`);
    await waitLive(page);

    await page.getByLabel("Message").fill("[tokens=1000] A long answer, please.");
    await page.getByLabel(/Instructions/).fill("Be thorough.");
    await page.getByRole("button", { name: "Start", exact: true }).click();
    await page.waitForSelector("#start-status[data-session-id]");
    const id = (await page.getAttribute("#start-status", "data-session-id"))!;
    expect(await page.textContent("#start-status")).toContain(`Started session ${id}`);
    await page.waitForFunction(
      (id) =>
        (document.querySelector(`.panel[data-session-id="${id}"] .text`)?.textContent?.length ?? 0) > 20,
      id,
      { timeout: WAIT_MS },
    );
    expect(await panel(page, id).getAttribute("data-status")).toBe("running");
    expect(await panel(page, id).locator("[data-stat='model']").textContent()).toBe("simulated");

    const cancel = panel(page, id).getByRole("button", { name: `Cancel session ${id}` });
    await cancel.focus();
    await page.keyboard.press("Enter");
    expect(await waitForStatus(page, id, ["cancelled", "done", "error"])).toBe("cancelled");
    expect(await sessionStatus(gateway.url, id)).toBe("cancelled");
    const { text, terminal } = await sessionText(gateway.url, id);
    expect(terminal).toBe("cancelled");
    expect(await panelText(page, id)).toBe(text);
    await page.waitForFunction(() =>
      document.getElementById("announcer")?.textContent?.includes("cancelled"),
    );

    // Filter by status.
    await page.getByLabel("Show").selectOption("running");
    await expect.poll(() => panel(page, id).isVisible()).toBe(false);
    expect(await page.isVisible("#filter-empty")).toBe(true);
    await page.getByLabel("Show").selectOption("cancelled");
    await expect.poll(() => panel(page, id).isVisible()).toBe(true);
    expect(await page.locator("#filter option[value='cancelled']").textContent()).toBe("Cancelled (1)");
    await page.getByLabel("Show").selectOption("all");

    // The finished panel collapses (after 2 s here, ?collapseAfter=2) into the Finished list; Expand opens it.
    await page.locator("#message").focus(); // focus inside a panel keeps it open
    await page.mouse.move(0, 0);
    await page.waitForSelector(`#finished .panel.collapsed[data-session-id="${id}"]`, { timeout: WAIT_MS });
    await panel(page, id)
      .getByRole("button", { name: `Expand session ${id}` })
      .click();
    expect(await panel(page, id).getAttribute("class")).not.toContain("collapsed");
    expect(await panelText(page, id)).toBe(text);
    expect(errors).toEqual([]);
  });

  it("asks for an access token once, says when it is missing or expired, and uses it everywhere", async () => {
    const secret = "dashboard-test-secret-0123456789abcdef";
    const key = new TextEncoder().encode(secret);
    const token = (expiresAt: number) =>
      new SignJWT({ scope: "run subscribe" })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject("dashboard-user")
        .setExpirationTime(expiresAt)
        .sign(key);
    const now = Math.floor(Date.now() / 1000);
    const gateway = await startGateway(
      gatewayEnv({
        AUTH_JWT_SECRET: secret,
        AUTH_CLOCK_TOLERANCE_SECONDS: "0",
        SIMULATED_TOKENS_PER_SECOND: "20",
      }),
    );
    const { page, errors } = await openDashboard(await newContext(), `${gateway.url}/`);

    await page.waitForSelector("#auth:not([hidden])", { timeout: WAIT_MS });
    expect(await page.textContent("#auth-message")).toContain("needs an access token");
    expect(await page.getAttribute("#connection", "data-state")).toBe("auth");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("token");

    await page.getByLabel("Access token", { exact: true }).fill(await token(now - 60));
    await page.getByRole("button", { name: "Use this token" }).click();
    await page.waitForFunction(() =>
      document.getElementById("auth-message")?.textContent?.includes("expired"),
    );
    expect(await page.textContent("#connection-text")).toContain("Token expired");

    await page.getByLabel("Access token", { exact: true }).fill(await token(now + 3600));
    await page.getByLabel("Access token", { exact: true }).press("Enter");
    await waitLive(page);
    expect(await page.isHidden("#auth")).toBe(true);
    await page.getByLabel("Message").fill("[tokens=20] With a token.");
    await page.getByLabel("Message").press("Enter");
    await page.waitForSelector("#start-status[data-session-id]");
    const id = (await page.getAttribute("#start-status", "data-session-id"))!;
    expect(await waitForStatus(page, id, ["done", "error", "cancelled"])).toBe("done");
    expect(await openSseConnections(gateway.url)).toBe(1);

    // A reload keeps the token (session storage) and asks nothing.
    await page.reload();
    await waitLive(page);
    expect(await page.isHidden("#auth")).toBe(true);
    expect(await waitForStatus(page, id, ["done"])).toBe("done");
    // The only errors are the browser's own log lines for the 401 answers.
    expect(errors.filter((e) => !/status of 401/.test(e))).toEqual([]);
  });
});

describe.each(ORIGINS)("the dashboard over $label", (origin) => {
  it("per-session EventSources in one page: 6 stream at a time over HTTP/1.1, all of them over HTTP/2", async () => {
    const streams = 10;
    // The runs are still going at the end: a short drain, so that stopping the gateway is quick.
    const gateway = await startGateway(gatewayEnv({ DRAIN_MS: "200", RUN_DRAIN_TIMEOUT_MS: "200" }));
    const base = await pageBase(origin, gateway);
    const page = await (await newContext()).newPage();
    await page.goto(`${base}/healthz`);
    expect(await negotiatedProtocol(page)).toBe(origin.protocol);
    const ids: string[] = [];
    for (let i = 0; i < streams; i++) {
      const run = await request("POST", `${gateway.url}/api/v1/sessions`, {
        body: { message: `[tokens=200] Long run ${i}.` },
      });
      expect(run.status).toBe(201);
      ids.push(run.body.id as string);
    }
    // Each EventSource notes when its first event came; the runs last ~30 s, so on HTTP/1.1 the
    // 7th and later wait for a connection that never frees up within the window.
    await page.evaluate((ids) => {
      const seen: Record<string, boolean> = {};
      (window as unknown as { seen: Record<string, boolean> }).seen = seen;
      for (const id of ids) {
        const es = new EventSource(`/api/v1/sessions/${id}/stream`);
        es.addEventListener("token", () => {
          seen[id] = true;
        });
      }
    }, ids);
    const expected = origin.protocol === "h2" ? streams : BROWSER_CONNECTIONS_PER_HOST;
    await page.waitForFunction(
      (expected) => Object.keys((window as unknown as { seen: object }).seen).length >= expected,
      expected,
      { timeout: WAIT_MS },
    );
    await sleep(2000);
    const streaming = await page.evaluate(
      () => Object.keys((window as unknown as { seen: object }).seen).length,
    );
    console.log(`${origin.label}: ${streaming} of ${streams} per-session EventSources streaming at once`);
    expect(streaming).toBe(expected);
  });

  it("three tabs hold ONE SSE connection; when the leader tab closes, another resumes without loss or repeats", async () => {
    const gateway = await startGateway(gatewayEnv({ SIMULATED_TOKENS_PER_SECOND: "10" }));
    const base = await pageBase(origin, gateway);
    const context = await newContext();
    const tabs: Dashboard[] = [];
    for (let i = 0; i < 3; i++) tabs.push(await openDashboard(context, `${base}/`));
    const pages = tabs.map((tab) => tab.page);
    // The first tab's load came over the network (the others' may come from the HTTP cache: "").
    expect(await negotiatedProtocol(pages[0]!)).toBe(origin.protocol);
    for (const page of pages) await waitLive(page);
    await expect.poll(() => leaderOf(pages)).toHaveLength(1);
    const [leader] = await leaderOf(pages);
    const followers = pages.filter((page) => page !== leader);
    for (const page of followers) expect(await page.getAttribute("#tab-role", "data-role")).toBe("follower");
    await expect.poll(() => openSseConnections(gateway.url), { timeout: 10_000 }).toBe(1);

    // A run started in a follower tab shows in every tab.
    await followers[0]!.getByLabel("Message").fill("[tokens=60] Three tabs.");
    await followers[0]!.getByLabel("Message").press("Enter");
    await followers[0]!.waitForSelector("#start-status[data-session-id]");
    const id = (await followers[0]!.getAttribute("#start-status", "data-session-id"))!;
    for (const page of pages) {
      await page.waitForFunction(
        (id) =>
          (document.querySelector(`.panel[data-session-id="${id}"] .text`)?.textContent?.length ?? 0) > 0,
        id,
        { timeout: WAIT_MS },
      );
    }
    expect(await openSseConnections(gateway.url)).toBe(1);

    // The leader goes away mid-stream: another tab takes the lock and resumes from the last cursor it saw.
    await leader!.close();
    await expect.poll(() => leaderOf(followers), { timeout: WAIT_MS }).toHaveLength(1);
    const [next] = await leaderOf(followers);
    await waitLive(next!);
    await expect.poll(() => openSseConnections(gateway.url), { timeout: 10_000 }).toBe(1);
    expect(await panel(next!, id).getAttribute("data-status")).toBe("running");

    const second = await request("POST", `${gateway.url}/api/v1/sessions`, {
      body: { message: "[tokens=12] After the takeover." },
    });
    expect(second.status).toBe(201);
    for (const page of followers) {
      expect(await waitForStatus(page, id, ["done"])).toBe("done");
      expect(await waitForStatus(page, second.body.id, ["done"])).toBe("done");
    }
    for (const sessionId of [id, second.body.id as string]) {
      const { text } = await sessionText(gateway.url, sessionId);
      for (const page of followers) expect(await panelText(page, sessionId)).toBe(text);
    }
    expect(await openSseConnections(gateway.url)).toBe(1);
    expect(tabs.flatMap((tab) => tab.errors)).toEqual([]);
  });

  it("reconnects by itself after the gateway is killed and restarted; every panel ends with the full text", async () => {
    const port = await freePort();
    // Runs die with their process: the restarted instance ends them as `interrupted` once their lease expires.
    const env = gatewayEnv({ PORT: String(port), LEASE_MS: "1500", RETRY_MS: "500" });
    let gateway = await startGateway(env);
    const url = gateway.url;
    const base = await pageBase(origin, gateway);
    const { page, errors } = await openDashboard(await newContext(), `${base}/`);
    const protocol = await negotiatedProtocol(page);
    console.log(`${origin.label}: the page negotiated ${protocol} (${base})`);
    expect(protocol).toBe(origin.protocol);
    await waitLive(page);
    await sleep(800);

    const runs: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { status, body } = await request("POST", `${url}/api/v1/sessions`, {
        body: { message: `[tokens=400] Run ${i} that the crash interrupts.` },
      });
      expect(status).toBe(201);
      runs.push(body.id as string);
    }
    // Outside producers keep appending across the outage (retrying while the gateway is away).
    const producers = ["producer-a", "producer-b"].map((name) => `${name}-${Date.now().toString(36)}`);
    let producing = true;
    const appendOnce = async (id: string, events: unknown[]): Promise<void> => {
      for (;;) {
        try {
          const response = await fetch(`${url}/api/v1/sessions/${id}/events`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ events }),
            signal: AbortSignal.timeout(2000),
          });
          await response.arrayBuffer();
          if (response.status === 202) return;
        } catch {
          // the gateway is away: try again
        }
        await sleep(100);
      }
    };
    const produce = async (id: string): Promise<void> => {
      await appendOnce(id, [
        { type: "start", data: { model: "producer", createdAt: new Date().toISOString() } },
      ]);
      for (let n = 0; producing; n++) {
        await appendOnce(id, [{ type: "token", data: { content: `${n} ` } }]);
        await sleep(120);
      }
      await appendOnce(id, [
        { type: "done", data: { session_id: id, total_tokens: 0, finish_reason: "stop" } },
      ]);
    };
    const producing$ = Promise.all(producers.map(produce));
    const all = [...runs, ...producers];

    await page.waitForFunction(
      (ids) =>
        ids.every(
          (id) =>
            (document.querySelector(`.panel[data-session-id="${id}"] .text`)?.textContent?.length ?? 0) > 8,
        ),
      all,
      { timeout: WAIT_MS },
    );

    gateway.kill("SIGKILL");
    await gateway.exited;
    await page.waitForSelector("#connection[data-state='reconnecting'], #connection[data-state='offline']", {
      timeout: WAIT_MS,
    });
    await sleep(1500);
    gateway = await startGateway(env);
    expect(gateway.url).toBe(url);

    // Resumed on the same EventSource with Last-Event-ID: the page says how many events it recovered.
    await page.waitForSelector("#connection[data-state='live'][data-recovered]", { timeout: WAIT_MS });
    const recovered = await page.getAttribute("#connection", "data-recovered");
    console.log(`restart: ${await page.textContent("#connection-text")} (data-recovered=${recovered})`);
    await sleep(1500);
    producing = false;
    await producing$;

    for (const id of runs)
      expect(await waitForStatus(page, id, ["interrupted", "error", "done"])).toBe("interrupted");
    for (const id of producers) expect(await waitForStatus(page, id, ["done", "error"])).toBe("done");
    for (const id of all) {
      const { text } = await sessionText(url, id);
      expect(text.length).toBeGreaterThan(0);
      expect(await panelText(page, id)).toBe(text);
    }
    expect(await openSseConnections(url)).toBe(1);
    // The reconnect itself logs a failed resource load while the gateway is down; nothing else.
    expect(errors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(e))).toEqual([]);
  });
});
