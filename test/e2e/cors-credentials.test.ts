/**
 * A page on another origin uses the gateway with the auth cookie, in Chromium: the page is served from
 * 127.0.0.1 on one port and the gateway listens on another (same site, so the cookie may go; another
 * origin, so CORS decides), the cookie is set for the gateway, and CORS_ORIGINS lists the page's
 * origin. `fetch(..., {credentials: "include"})` starts and reads a session (a JSON preflight too), and
 * `new EventSource(url, {withCredentials: true})` streams it to its end. Without credentials the same
 * stream is refused (401): the cookie is what lets it in.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT } from "jose";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startTestGateway, type TestGateway } from "../helpers/index.js";
import { launchChromium, watchErrors } from "./helpers/browser.js";

const SECRET = "cors-e2e-secret-0123456789-abcdefghijklmnopqrstuv";
const COOKIE = "sse_token";
const TOKENS = 5;

let browser: Browser;
let context: BrowserContext;
let gw: TestGateway;
let pageServer: Server;
let pageOrigin: string;
let token: string;

async function mint(sub: string, scope: string): Promise<string> {
  return new SignJWT({ sub, scope })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));
}

beforeAll(async () => {
  // The page's origin must be known before the gateway starts (CORS_ORIGINS): listen first.
  pageServer = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>another origin</title><p>a page on another origin</p>");
  });
  await new Promise<void>((resolve) => pageServer.listen(0, "127.0.0.1", resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
  gw = await startTestGateway({
    redisUrl: inject("redisUrl"),
    env: { AUTH_JWT_SECRET: SECRET, AUTH_COOKIE_NAME: COOKIE, CORS_ORIGINS: pageOrigin },
  });
  expect(new URL(gw.url).origin).not.toBe(pageOrigin);
  browser = await launchChromium();
  context = await browser.newContext();
  token = await mint("cors-user", "run subscribe");
  await context.addCookies([{ name: COOKIE, value: token, url: gw.url, httpOnly: true }]);
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await gw?.close();
  pageServer?.closeAllConnections();
  await new Promise<void>((resolve) => (pageServer ? pageServer.close(() => resolve()) : resolve()));
});

async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${pageOrigin}/`);
  return { page, errors };
}

describe("a page on another origin, with the cookie", () => {
  it("streams a session to its end with new EventSource(url, {withCredentials: true})", async () => {
    // Started by the same subject from outside the browser: the page only reads.
    const created = await fetch(`${gw.url}/api/v1/sessions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ message: `across origins [tokens=${TOKENS}]` }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    const { page } = await openPage();
    const types = await page.evaluate(
      ({ url }) =>
        new Promise<string[]>((resolve, reject) => {
          const seen: string[] = [];
          const source = new EventSource(url, { withCredentials: true });
          for (const type of ["start", "token", "usage", "done", "error", "cancelled"]) {
            source.addEventListener(type, (event) => {
              // The connection's own failures are `error` events too, without data: onerror has those.
              if (!(event instanceof MessageEvent)) return;
              seen.push(type);
              if (type === "done" || type === "error" || type === "cancelled") {
                source.close();
                resolve(seen);
              }
            });
          }
          source.onerror = () => {
            source.close();
            reject(new Error(`EventSource failed after ${seen.join(",") || "nothing"}`));
          };
        }),
      { url: `${gw.url}/api/v1/sessions/${id}/stream` },
    );
    expect(types).toEqual(["start", ...Array(TOKENS).fill("token"), "usage", "done"]);
    await page.close();
  });

  it('starts and reads a session with fetch(url, {credentials: "include"}) (a JSON POST: preflight first)', async () => {
    const { page } = await openPage();
    const result = await page.evaluate(async (gateway) => {
      const created = await fetch(`${gateway}/api/v1/sessions`, {
        method: "POST",
        credentials: "include",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ message: "from the page [tokens=2]" }),
      });
      const session = (await created.json()) as { id: string };
      const read = await fetch(`${gateway}/api/v1/sessions/${session.id}`, { credentials: "include" });
      const info = (await read.json()) as { id: string };
      return { created: created.status, read: read.status, sameId: info.id === session.id };
    }, gw.url);
    expect(result).toEqual({ created: 201, read: 200, sameId: true });
    await page.close();
  });

  it("without credentials the cookie stays home and the gateway refuses the stream", async () => {
    const { page } = await openPage();
    const result = await page.evaluate(async (gateway) => {
      const plain = await fetch(`${gateway}/api/v1/sessions/nobody-s-session`);
      const closed = await new Promise<number>((resolve) => {
        const source = new EventSource(`${gateway}/api/v1/stream?sessions=@sessions`);
        source.onerror = () => {
          const state = source.readyState;
          source.close();
          resolve(state);
        };
        source.onopen = () => {
          source.close();
          resolve(-1);
        };
      });
      return { plain: plain.status, eventSourceState: closed };
    }, gw.url);
    // 401 readable by the page (the CORS headers are on errors too); the EventSource fails for good (CLOSED).
    expect(result).toEqual({ plain: 401, eventSourceState: 2 });
    await page.close();
  });
});
