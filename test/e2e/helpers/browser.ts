/**
 * Chromium (Debian's, driven by playwright-core) and the built gateway, for the dashboard's tests.
 *
 * The page imports `/client.js`, which the gateway serves from `dist/client/index.js`: the tests run
 * the BUILT server (`dist/server.js`), and build it first when dist/ is missing or older than src/.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { type GatewayProcess, getJson, startGatewayProcess } from "../../helpers/index.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Starting a process on a busy 2-core machine can be slow. */
const HEALTH_TIMEOUT_MS = 60_000;

/** `npm run build` when dist/ is missing or older than src/ (scripts/ensure-built.mjs, as `npm start` does). */
export function ensureBuilt(): void {
  execFileSync(process.execPath, ["scripts/ensure-built.mjs"], { cwd: REPO_ROOT, stdio: "inherit" });
  if (!existsSync(new URL("dist/client/index.js", `file://${REPO_ROOT}`))) {
    throw new Error("dist/client/index.js is missing after the build");
  }
}

/** A gateway process running the built server, so that `/client.js` exists. */
export function startBuiltGateway(env: Record<string, string>): Promise<GatewayProcess> {
  return startGatewayProcess(env, { entry: "dist/server.js", healthTimeoutMs: HEALTH_TIMEOUT_MS });
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      // nginx's HTTPS listener in the tests has a self-signed certificate (helpers/nginx.ts).
      "--ignore-certificate-errors",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Pages in the background (several tabs of one context) must not have their timers throttled.
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
    ],
  });
}

/** Open SSE connections on the gateway, summed over `sse_open_connections{kind}`. */
export async function openSseConnections(gatewayUrl: string): Promise<number> {
  const response = await fetch(`${gatewayUrl}/metrics`);
  const text = await response.text();
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^sse_open_connections(?:\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (match) total += Number(match[1]);
  }
  return total;
}

/** Page errors and console errors, to show when a test fails (and to assert there were none). */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console.error: ${message.text()}`);
  });
  return errors;
}

/** The full text of a session, from its single-session stream (which closes after the terminal event). */
export async function sessionText(
  gatewayUrl: string,
  id: string,
): Promise<{ text: string; terminal: string }> {
  const response = await fetch(`${gatewayUrl}/api/v1/sessions/${encodeURIComponent(id)}/stream`, {
    signal: AbortSignal.timeout(30_000),
  });
  if (response.status !== 200) throw new Error(`stream of ${id}: HTTP ${response.status}`);
  const body = await response.text();
  let text = "";
  let terminal = "";
  for (const frame of body.split("\n\n")) {
    let event = "";
    let data = "";
    for (const line of frame.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (event === "token") text += (JSON.parse(data) as { content: string }).content;
    if (event === "done" || event === "error" || event === "cancelled") terminal = event;
  }
  return { text, terminal };
}

/** `GET /api/v1/sessions/:id` */
export async function sessionStatus(gatewayUrl: string, id: string): Promise<string> {
  const { body } = await getJson(`${gatewayUrl}/api/v1/sessions/${encodeURIComponent(id)}`);
  return (body as { status: string }).status;
}
