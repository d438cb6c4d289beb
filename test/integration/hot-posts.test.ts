/**
 * `POST /api/v1/sessions/:id/events` and `POST /api/v1/agent/stream` are hot routes (src/http/front.ts):
 * served by the gateway's own HTTP layer, not Express, whatever the body's form (a Content-Length or
 * chunked): the same answers either way (status, JSON body or event stream, X-Request-Id, nosniff,
 * CORS), the documented body rules (JSON only, UTF-8, size and depth limits), and one access log line.
 */
import { randomBytes } from "node:crypto";
import { request as httpRequest, IncomingMessage, type Server } from "node:http";
import { SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createGateway, type Gateway } from "../../src/gateway.js";
import { listen } from "../../src/listen.js";
import { logLines, randomPrefix } from "../helpers/index.js";

const SECRET = "append-front-secret-0123456789-abcdefghijklmn";
const ORIGIN = "https://app.example";

type LogLine = Record<string, unknown> & {
  msg?: string;
  req?: { id?: string };
  res?: { statusCode?: number };
};

interface Answer {
  status: number;
  /** The JSON body, or null for none or for an event stream (see `text`). */
  body: unknown;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A POST with the body sent with Content-Length or chunked. */
function post(
  url: string,
  body: string,
  headers: Record<string, string>,
  form: "exact" | "chunked",
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: "POST",
      agent: false,
      headers: {
        "content-type": "application/json",
        ...headers,
        ...(form === "exact" ? { "content-length": String(Buffer.byteLength(body)) } : {}),
      },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
      });
      res.on("end", () => {
        const json = text !== "" && res.headers["content-type"]?.startsWith("application/json");
        resolve({
          status: res.statusCode ?? 0,
          body: json ? JSON.parse(text) : null,
          text,
          headers: res.headers,
        });
      });
    });
    if (form === "chunked") req.write(body.slice(0, 1));
    req.end(form === "chunked" ? body.slice(1) : body);
  });
}

const newId = (label: string) => `${label}-${randomBytes(5).toString("hex")}`;
const tokenEvent = (content: string) => ({ type: "token", data: { content } });

describe("the hot POST routes, in both body forms", () => {
  let gateway: Gateway;
  let server: Server;
  let base: string;
  let publisher: string;
  let subscriber: string;
  let runner: string;
  const { sink, lines: logs } = logLines<LogLine>();
  const seen: IncomingMessage[] = [];

  beforeAll(async () => {
    const config = loadConfig({
      LOG_LEVEL: "info",
      REDIS_URL: inject("redisUrl"),
      REDIS_KEY_PREFIX: randomPrefix(),
      AUTH_JWT_SECRET: SECRET,
      CORS_ORIGINS: ORIGIN,
      MAX_JSON_DEPTH: "8",
      MAX_BODY_BYTES: "2048",
      SIMULATED_TOKENS_PER_SECOND: "1000",
    });
    gateway = await createGateway(config, { logger: pino({ level: "info" }, sink), defaultMetrics: false });
    const listening = await listen(gateway.app, config, 0, "127.0.0.1");
    server = listening.server;
    server.prependListener("request", (req) => seen.push(req));
    base = `http://127.0.0.1:${listening.port}`;
    const mint = (claims: Record<string, unknown>) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode(SECRET));
    publisher = await mint({ sub: "append-front-publisher", scope: "publish" });
    runner = await mint({ sub: "append-front-runner", scope: "run" });
    subscriber = await mint({ sub: "append-front-reader", scope: "subscribe" });
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gateway.close();
  });

  const auth = () => ({ authorization: `Bearer ${publisher}` });

  /** Sends the same request in both forms (each to a session of its own) and returns both answers. */
  async function both(
    path: (id: string) => string,
    body: string,
    headers: Record<string, string>,
    prepare?: (id: string) => Promise<void>,
  ): Promise<{
    exact: Answer;
    chunked: Answer;
    exactRequest: IncomingMessage;
    chunkedRequest: IncomingMessage;
  }> {
    const answers: Answer[] = [];
    const requests: IncomingMessage[] = [];
    for (const form of ["exact", "chunked"] as const) {
      const id = newId(form);
      await prepare?.(id);
      const before = seen.length;
      answers.push(await post(`${base}${path(id)}`, body, headers, form));
      requests.push(seen[before]!);
    }
    return {
      exact: answers[0]!,
      chunked: answers[1]!,
      exactRequest: requests[0]!,
      chunkedRequest: requests[1]!,
    };
  }

  const events = (id: string) => `/api/v1/sessions/${id}/events`;

  it("appends in both forms without Express, with the same answer, headers and log line", async () => {
    const body = JSON.stringify({ events: [tokenEvent("a"), tokenEvent("b")] });
    const { exact, chunked, exactRequest, chunkedRequest } = await both(events, body, {
      ...auth(),
      origin: ORIGIN,
      "x-request-id": "append-front-1",
    });
    // Express re-parents the requests it serves; the front leaves Node's own.
    expect(Object.getPrototypeOf(exactRequest)).toBe(IncomingMessage.prototype);
    expect(Object.getPrototypeOf(chunkedRequest)).toBe(IncomingMessage.prototype);
    for (const answer of [exact, chunked]) {
      expect(answer.status).toBe(202);
      expect((answer.body as { ids: string[] }).ids).toHaveLength(2);
      expect(answer.headers["content-type"]).toBe("application/json; charset=utf-8");
      expect(answer.headers["x-request-id"]).toBe("append-front-1");
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      expect(answer.headers["access-control-allow-origin"]).toBe(ORIGIN);
      expect(answer.headers["access-control-expose-headers"]).toBe(
        chunked.headers["access-control-expose-headers"],
      );
    }
    const completed = logs.filter(
      (line) => line.req?.id === "append-front-1" && line.msg === "request completed",
    );
    expect(completed).toHaveLength(2);
    for (const line of completed) {
      expect(line.res?.statusCode).toBe(202);
      expect(line.responseTime).toEqual(expect.any(Number));
    }
  });

  it("accepts a body that starts with a UTF-8 byte order mark", async () => {
    const body = `\ufeff${JSON.stringify({ events: [tokenEvent("bom")] })}`;
    const { exact, chunked } = await both(events, body, auth());
    for (const answer of [exact, chunked]) {
      expect(answer.status).toBe(202);
      expect((answer.body as { ids: string[] }).ids).toHaveLength(1);
    }
  });

  it("appended events are read back in order", async () => {
    const id = newId("readback");
    const answer = await post(
      `${base}${events(id)}`,
      JSON.stringify({ events: [tokenEvent("x"), tokenEvent("y"), { type: "done", data: {} }] }),
      auth(),
      "exact",
    );
    expect(answer.status).toBe(202);
    const read = await gateway.context.store.read(id, null, 10);
    expect(read.events.map((event) => event.type)).toEqual(["token", "token", "done"]);
    expect(read.events.map((event) => event.id)).toEqual((answer.body as { ids: string[] }).ids);
  });

  const refusals: Array<{
    what: string;
    body: string;
    headers?: () => Record<string, string>;
    code: string;
    status: number;
  }> = [
    { what: "invalid JSON", body: '{"events": [', code: "invalid_json", status: 400 },
    { what: "a JSON string at the top", body: '"events"', code: "invalid_json", status: 400 },
    { what: "white space only", body: "  \n ", code: "invalid_json", status: 400 },
    { what: "an array at the top", body: "[]", code: "invalid_request", status: 400 },
    {
      what: "JSON nested too deep",
      body: JSON.stringify({
        events: [{ type: "token", data: { a: { b: { c: { d: { e: { f: {} } } } } } } }],
      }),
      code: "too_deep",
      status: 400,
    },
    { what: "an empty batch", body: '{"events":[]}', code: "invalid_request", status: 400 },
    {
      what: "a body over MAX_BODY_BYTES",
      body: JSON.stringify({ events: [tokenEvent("x".repeat(3_000))] }),
      code: "payload_too_large",
      status: 413,
    },
    {
      what: "another media type",
      body: JSON.stringify({ events: [tokenEvent("a")] }),
      headers: () => ({ ...auth(), "content-type": "text/plain" }),
      code: "unsupported_media_type",
      status: 415,
    },
    {
      what: "another charset",
      body: JSON.stringify({ events: [tokenEvent("a")] }),
      headers: () => ({ ...auth(), "content-type": "application/json; charset=latin1" }),
      code: "unsupported_media_type",
      status: 415,
    },
    {
      what: "a bad event type",
      body: '{"events":[{"type":"Token!","data":{}}]}',
      code: "invalid_request",
      status: 400,
    },
    {
      what: "an event after a terminal event",
      body: JSON.stringify({ events: [{ type: "done", data: {} }, tokenEvent("late")] }),
      code: "event_after_terminal",
      status: 400,
    },
    {
      what: "no token",
      body: JSON.stringify({ events: [tokenEvent("a")] }),
      headers: () => ({}),
      code: "missing_token",
      status: 401,
    },
    {
      what: "a token without the publish scope",
      body: JSON.stringify({ events: [tokenEvent("a")] }),
      headers: () => ({ authorization: `Bearer ${subscriber}` }),
      code: "insufficient_scope",
      status: 403,
    },
  ];

  for (const refusal of refusals) {
    it(`refuses ${refusal.what} (${refusal.status} ${refusal.code}) in both forms`, async () => {
      const { exact, chunked } = await both(events, refusal.body, {
        ...(refusal.headers?.() ?? auth()),
        origin: ORIGIN,
      });
      for (const answer of [exact, chunked]) {
        expect(answer.status).toBe(refusal.status);
        expect((answer.body as { error: { code: string } }).error.code).toBe(refusal.code);
        expect(answer.headers["access-control-allow-origin"]).toBe(ORIGIN);
        expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      }
      expect(exact.body).toEqual(chunked.body);
    });
  }

  it("refuses an append to an ended session (409) in both forms, appending nothing", async () => {
    const end = async (id: string) => {
      const answer = await post(
        `${base}${events(id)}`,
        JSON.stringify({ events: [{ type: "done", data: {} }] }),
        auth(),
        "exact",
      );
      expect(answer.status).toBe(202);
    };
    const { exact, chunked } = await both(
      events,
      JSON.stringify({ events: [tokenEvent("late")] }),
      auth(),
      end,
    );
    for (const answer of [exact, chunked]) {
      expect(answer.status).toBe(409);
      expect((answer.body as { error: { code: string } }).error.code).toBe("session_ended");
    }
  });

  it("serves any path form it routes: a query string is ignored, a percent-encoded id is decoded", async () => {
    const body = JSON.stringify({ events: [tokenEvent("q")] });
    const before = seen.length;
    const withQuery = await post(`${base}${events(newId("query"))}?x=1`, body, auth(), "exact");
    expect(withQuery.status).toBe(202);
    expect(Object.getPrototypeOf(seen[before]!)).toBe(IncomingMessage.prototype);
    const id = newId("enc");
    const encoded = await post(
      `${base}${events(`%${id.charCodeAt(0).toString(16)}${id.slice(1)}`)}`,
      body,
      auth(),
      "exact",
    );
    expect(encoded.status).toBe(202);
    expect((await gateway.context.store.read(id, null, 10)).events).toHaveLength(1);
    const broken = await post(`${base}${events("%zz")}`, body, auth(), "exact");
    expect(broken.status).toBe(400);
    expect((broken.body as { error: { code: string } }).error.code).toBe("invalid_path");
    // Not a hot route: Express answers 404 for a trailing slash, and 405 names the method.
    const slash = await post(`${base}${events(newId("slash"))}/`, body, auth(), "exact");
    expect(slash.status).toBe(404);
    const wrongMethod = await fetch(`${base}${events(newId("m"))}`, { headers: auth() });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
  });

  it("authenticates on the headers before it reads a body", async () => {
    // A client that declares a body and never sends it is answered at once without a token.
    const answer = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${base}${events(newId("slow"))}`, {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": "100000" },
      });
      req.on("error", reject);
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.write("{");
    });
    expect(answer).toBe(401);
  });

  const agentPath = () => "/api/v1/agent/stream";

  it("streams an agent run from both forms without Express, with the same headers and log lines", async () => {
    const body = JSON.stringify({ message: "hello" });
    const { exact, chunked, exactRequest, chunkedRequest } = await both(agentPath, body, {
      authorization: `Bearer ${runner}`,
      origin: ORIGIN,
      "x-request-id": "agent-front-1",
    });
    expect(Object.getPrototypeOf(exactRequest)).toBe(IncomingMessage.prototype);
    expect(Object.getPrototypeOf(chunkedRequest)).toBe(IncomingMessage.prototype);
    for (const answer of [exact, chunked]) {
      expect(answer.status).toBe(200);
      expect(answer.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
      expect(answer.headers["x-session-id"]).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
      expect(answer.headers["x-request-id"]).toBe("agent-front-1");
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      expect(answer.headers["access-control-allow-origin"]).toBe(ORIGIN);
      const types = [...answer.text.matchAll(/^event: (.+)$/gm)].map((match) => match[1]);
      expect(types[0]).toBe("start");
      expect(types).toContain("token");
      expect(types.at(-1)).toBe("done");
      expect(answer.text).toMatch(/^id: \d+-\d+$/m);
    }
    const front = logs.filter((line) => line.req?.id === "agent-front-1").map((line) => line.msg);
    expect(front.filter((msg) => msg === "stream opened")).toHaveLength(2);
    expect(front.filter((msg) => msg === "request completed")).toHaveLength(2);
  });

  const agentRefusals: Array<{
    what: string;
    body: string;
    headers: () => Record<string, string>;
    code: string;
    status: number;
  }> = [
    {
      what: "invalid JSON",
      body: "{",
      headers: () => ({ authorization: `Bearer ${runner}` }),
      code: "invalid_json",
      status: 400,
    },
    {
      what: "no message",
      body: "{}",
      headers: () => ({ authorization: `Bearer ${runner}` }),
      code: "invalid_request",
      status: 400,
    },
    { what: "no token", body: '{"message":"hi"}', headers: () => ({}), code: "missing_token", status: 401 },
    {
      what: "a token without the run scope",
      body: '{"message":"hi"}',
      headers: () => ({ authorization: `Bearer ${publisher}` }),
      code: "insufficient_scope",
      status: 403,
    },
  ];

  for (const refusal of agentRefusals) {
    it(`refuses an agent run with ${refusal.what} (${refusal.status} ${refusal.code}) in both forms`, async () => {
      const { exact, chunked } = await both(agentPath, refusal.body, {
        ...refusal.headers(),
        origin: ORIGIN,
      });
      for (const answer of [exact, chunked]) {
        expect(answer.status).toBe(refusal.status);
        expect((answer.body as { error: { code: string } }).error.code).toBe(refusal.code);
        expect(answer.headers["access-control-allow-origin"]).toBe(ORIGIN);
      }
      expect(exact.body).toEqual(chunked.body);
    });
  }
});
