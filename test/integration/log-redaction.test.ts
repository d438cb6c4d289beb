/**
 * A log scrape: a real gateway process at LOG_LEVEL=debug, exercised with tokens in the header, the
 * cookie and `?access_token=`, and with an upstream that answers 401 echoing the API key. Its captured
 * output must hold none of the tokens, the key, or any `access_token` value; no response body may
 * carry a stack trace or the key.
 */
import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  collectUntilClosed,
  type GatewayProcess,
  openSse,
  randomPrefix,
  request,
  startGatewayProcess,
} from "../helpers/index.js";

const SECRET = "log-redaction-secret-0123456789-abcdefghijklmnop";
const API_KEY = "sk-test-SECRET123";
const WAIT_MS = 15_000;

async function mint(claims: Record<string, unknown>, expiresAt: number | string = "1h"): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(SECRET));
}

describe("no secret reaches the logs or a response", () => {
  let fixture: OpenAIFixture;
  let gw: GatewayProcess;
  /** Every secret string sent to the gateway: none may appear in its output. */
  const secrets: string[] = [API_KEY];
  /** Every response body received. */
  const bodies: string[] = [];

  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    gw = await startGatewayProcess({
      REDIS_URL: inject("redisUrl"),
      REDIS_KEY_PREFIX: randomPrefix(),
      AUTH_JWT_SECRET: SECRET,
      LOG_LEVEL: "debug",
      OPENAI_API_KEY: API_KEY,
      OPENAI_BASE_URL: fixture.url,
      SIMULATED_TOKENS_PER_SECOND: "1000",
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await fixture?.close();
  });

  const remember = (text: string) => {
    bodies.push(text);
    return text;
  };

  it("runs, reads and refusals with tokens in every place", async () => {
    const sub = `user-${randomBytes(4).toString("hex")}`;
    const headerToken = await mint({ sub, scope: "run publish subscribe" });
    const cookieToken = await mint({ sub, scope: "subscribe", n: 1 });
    const queryToken = await mint({ sub, scope: "subscribe", n: 2 });
    const muxToken = await mint({ sub, scope: "subscribe", n: 3 });
    const escapedToken = await mint({ sub, scope: "subscribe", n: 4 });
    const expiredToken = await mint({ sub, scope: "subscribe" }, Math.floor(Date.now() / 1000) - 3600);
    const forgedToken = `${headerToken.split(".").slice(0, 2).join(".")}.${randomBytes(32).toString("base64url")}`;
    const garbage = `garbage-${randomBytes(8).toString("hex")}`;
    secrets.push(
      headerToken,
      cookieToken,
      queryToken,
      muxToken,
      escapedToken,
      expiredToken,
      forgedToken,
      garbage,
    );
    const api = (path: string) => `${gw.url}/api/v1${path}`;

    // A run whose upstream refuses the key (the fixture echoes the key in its error body).
    fixture.script({ status: 401 });
    const created = await request("POST", api("/sessions"), {
      body: { message: "hello" },
      headers: { authorization: `Bearer ${headerToken}` },
    });
    remember(created.text);
    expect(created.status).toBe(201);
    const id = created.body.id as string;

    const stream = await collectUntilClosed(api(`/sessions/${id}/stream`), {
      headers: { cookie: `sse_token=${cookieToken}` },
      timeoutMs: WAIT_MS,
    });
    remember(stream.raw());
    const last = stream.events.at(-1);
    expect(last?.event).toBe("error");
    expect(JSON.parse(last!.data).code).toBe("upstream_auth");
    // The upstream's request did carry the key: the fixture saw it, the gateway did not repeat it.
    expect(fixture.requests.at(-1)?.headers.authorization).toBe(`Bearer ${API_KEY}`);

    // The agent stream, same failure, token in the header.
    fixture.script({ status: 401 });
    const agent = await fetch(api("/agent/stream"), {
      method: "POST",
      headers: { authorization: `Bearer ${headerToken}`, "content-type": "application/json" },
      body: JSON.stringify({ message: "hi" }),
    });
    expect(agent.status).toBe(200);
    remember(await agent.text());

    // Reads with ?access_token= (JSON, single stream, multiplexed stream).
    const read = await request("GET", api(`/sessions/${id}?access_token=${queryToken}`));
    remember(read.text);
    expect(read.status).toBe(200);
    const single = await collectUntilClosed(api(`/sessions/${id}/stream?access_token=${queryToken}`), {
      timeoutMs: WAIT_MS,
    });
    remember(single.raw());
    expect(single.status).toBe(200);
    const mux = await collectUntilClosed(api(`/stream?sessions=${id}&access_token=${muxToken}&x=1`), {
      timeoutMs: WAIT_MS,
    });
    remember(mux.raw());
    expect(mux.status).toBe(200);

    // The parameter's name percent-encoded: the parser decodes it to access_token, so the redaction must.
    const escaped = await collectUntilClosed(api(`/sessions/${id}/stream?access%5Ftoken=${escapedToken}`), {
      timeoutMs: WAIT_MS,
    });
    remember(escaped.raw());
    expect(escaped.status).toBe(200);

    // Refusals: expired, forged, garbage, in each place.
    for (const attempt of [
      () => request("GET", api(`/sessions/${id}`), { headers: { authorization: `Bearer ${expiredToken}` } }),
      () => request("GET", api(`/sessions/${id}`), { headers: { cookie: `sse_token=${forgedToken}` } }),
      () => request("GET", api(`/sessions/${id}?access_token=${garbage}`)),
      () => request("GET", api(`/sessions/${id}?ACCESS_TOKEN=${garbage}&access_token=${forgedToken}`)),
      () => request("GET", api(`/stream?access_token=${expiredToken}&sessions=${id}`)),
    ]) {
      const res = await attempt();
      remember(res.text);
      expect(res.status).toBe(401);
    }
    const refusedStream = await openSse(api(`/sessions/${id}/stream?access_token=${garbage}`));
    await refusedStream.closed;
    remember(refusedStream.raw());
    expect(refusedStream.status).toBe(401);

    // Bad input of every kind.
    for (const res of [
      await request("POST", api("/sessions"), {
        rawBody: "{not json",
        headers: { authorization: `Bearer ${headerToken}` },
      }),
      await request("POST", api("/sessions/%zz/events"), {
        rawBody: "{}",
        headers: { authorization: `Bearer ${headerToken}` },
      }),
      await request("DELETE", api(`/sessions/${id}?access_token=${queryToken}`)),
      await request("GET", `${gw.url}/nowhere?access_token=${queryToken}`),
      await request("POST", api(`/sessions/${id}/events`), {
        body: { events: [{ type: "BAD TYPE", data: {} }] },
        headers: { authorization: `Bearer ${headerToken}` },
      }),
    ]) {
      remember(res.text);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
  });

  it("the captured logs hold no token, no key and no access_token value", async () => {
    // Both runs have logged their end; the request logs are written as requests finish.
    await gw.waitForLog(/run ended[\s\S]*run ended/, WAIT_MS);
    const logs = gw.logs();
    expect(logs).toContain("request completed");
    // The URLs were logged, with the token cut out.
    expect(logs).toContain("access_token=[redacted]");
    for (const secret of secrets) {
      expect(logs, `a secret (${secret.slice(0, 12)}…) is in the logs`).not.toContain(secret);
      // Nor any part of a JWT long enough to matter (its payload or signature alone).
      const segments = secret.split(".");
      const parts = segments.length === 3 ? segments.slice(1) : segments;
      for (const part of parts.filter((segment) => segment.length >= 16)) {
        expect(logs, `part of a secret (${part.slice(0, 12)}…) is in the logs`).not.toContain(part);
      }
    }
    expect(logs).not.toContain("SECRET123");
    expect(logs).not.toMatch(/access_token=(?!\[redacted\])[^&\s"]+/i);
  });

  it("no response carried a stack trace or the key", () => {
    expect(bodies.length).toBeGreaterThan(10);
    for (const body of bodies) {
      expect(body).not.toContain("    at ");
      expect(body).not.toContain("SECRET123");
      expect(body).not.toContain("Incorrect API key");
    }
  });
});
