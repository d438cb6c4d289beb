/**
 * What a request may hold before it is authenticated and answered: headers and bodies are read within
 * a bound (a slow one is answered `408 request_timeout`, while a stream, whose request is complete,
 * lives on), the JSON API authenticates before it reads a body (as the hot routes do), and requests in
 * flight are counted per client address (`429 too_many_requests` past LIMIT_REQUESTS_IN_FLIGHT_PER_IP).
 * Raw sockets play the slow clients: nothing here is timed, a request either gets its answer or the
 * test says which it did not get.
 */
import { connect, type Socket } from "node:net";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  openSse,
  postJson,
  type SseConnection,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const SECRET = "request-bounds-secret-0123456789-abcdefghijklmn";
const ANSWER_WAIT_MS = 10_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw HTTP/1.1 client: writes what it is told, and collects what comes back. */
interface RawClient {
  socket: Socket;
  write(text: string): void;
  /** Resolves with everything received once `predicate` holds of it (rejects after ANSWER_WAIT_MS). */
  until(predicate: (received: string) => boolean, what: string): Promise<string>;
  close(): void;
}

const clients: RawClient[] = [];

function rawClient(url: string): Promise<RawClient> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = "";
    const waiters = new Set<() => void>();
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      received += chunk;
      for (const wake of waiters) wake();
    });
    socket.on("close", () => {
      for (const wake of waiters) wake();
    });
    socket.on("error", () => {});
    socket.once("connect", () => {
      const client: RawClient = {
        socket,
        write: (text) => socket.write(text),
        until: (predicate, what) =>
          new Promise((done, fail) => {
            const check = () => {
              if (predicate(received)) {
                waiters.delete(check);
                clearTimeout(timer);
                done(received);
              } else if (socket.destroyed) {
                waiters.delete(check);
                clearTimeout(timer);
                fail(new Error(`the connection closed without ${what}; received: ${received.slice(0, 300)}`));
              }
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`no ${what} within ${ANSWER_WAIT_MS} ms; received: ${received.slice(0, 300)}`));
            }, ANSWER_WAIT_MS);
            waiters.add(check);
            check();
          }),
        close: () => socket.destroy(),
      };
      clients.push(client);
      resolve(client);
    });
    socket.once("error", reject);
  });
}

/** Status and JSON body of the first response in `raw`. */
function parseAnswer(raw: string): { status: number; headers: string; body: { error?: { code: string } } } {
  const [head = "", body = ""] = raw.split("\r\n\r\n");
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  const json = body.slice(body.indexOf("{"), body.lastIndexOf("}") + 1);
  return { status, headers: head.toLowerCase(), body: JSON.parse(json || "{}") };
}

const answered = (raw: string) => {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /content-length: (\d+)/i.exec(raw.slice(0, end))?.[1];
  return length !== undefined && raw.length >= end + 4 + Number(length);
};

const postHead = (path: string, length: number, extra = "") =>
  `POST ${path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extra}\r\n`;

afterAll(() => {
  for (const client of clients) client.close();
});

describe("slow requests are answered 408 within REQUEST_TIMEOUT_MS / HEADERS_TIMEOUT_MS", () => {
  let gw: TestGateway;
  const opened: SseConnection[] = [];
  beforeAll(async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { REQUEST_TIMEOUT_MS: "600", HEADERS_TIMEOUT_MS: "400" },
    });
  });
  afterAll(async () => {
    for (const stream of opened) stream.close();
    await gw?.close();
  });

  it.each([
    ["the JSON API (Express)", "/api/v1/sessions"],
    ["an append (the front)", "/api/v1/sessions/slow-body/events"],
    ["the agent stream (the front)", "/api/v1/agent/stream"],
  ])("a body that never finishes, on %s", async (_name, path) => {
    const client = await rawClient(gw.url);
    client.write(`${postHead(path, 200)}{"message":`);
    const answer = parseAnswer(await client.until(answered, "an answer"));
    expect(answer.status).toBe(408);
    expect(answer.body).toEqual({ error: { code: "request_timeout", message: expect.any(String) } });
    expect(await gw.gateway.context.store.getSession("slow-body")).toBeNull();
  });

  it("headers that never finish", async () => {
    const client = await rawClient(gw.url);
    client.write("GET /api/v1/stream?sessions=@sessions HTTP/1.1\r\nHost: gateway\r\nX-Slow: ");
    const answer = parseAnswer(await client.until(answered, "an answer"));
    expect(answer.status).toBe(408);
    expect(answer.body.error?.code).toBe("request_timeout");
  });

  it("a stream, whose request is complete, outlives both bounds", async () => {
    const stream = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`);
    opened.push(stream);
    expect(stream.status).toBe(200);
    await stream.waitForEvent("connected", ANSWER_WAIT_MS);
    await sleep(2_000);
    const created = await postJson(`${gw.url}/api/v1/sessions`, { message: "later [tokens=1]" });
    expect(created.status).toBe(201);
    await stream.waitFor(
      (events) => events.some((event) => event.event === "@sessions:created"),
      ANSWER_WAIT_MS,
    );
    expect(stream.error()).toBeUndefined();
  });
});

describe("the JSON API authenticates before it reads a body", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ redisUrl: inject("redisUrl"), env: { AUTH_JWT_SECRET: SECRET } });
  });
  afterAll(() => gw?.close());

  it.each([
    "/api/v1/sessions",
    "/api/v1/subscriptions",
    "/api/v1/sessions/any/cancel",
    "/api/v1/sessions/any/events",
  ])("POST %s without a token is 401 before its body has come", async (path) => {
    const client = await rawClient(gw.url);
    // Announces a megabyte, sends one byte of it.
    client.write(`${postHead(path, 1_000_000)}{`);
    const answer = parseAnswer(await client.until(answered, "an answer before the body"));
    expect(answer.status).toBe(401);
    expect(answer.body.error?.code).toBe("missing_token");
  });

  it("a bad body without a token is 401 (the token first), with one it is the body's error", async () => {
    const noToken = await postJson(`${gw.url}/api/v1/sessions`, undefined, {});
    expect(noToken.status).toBe(401);
    const client = await rawClient(gw.url);
    client.write(`${postHead("/api/v1/subscriptions", 1)}{`);
    expect(parseAnswer(await client.until(answered, "an answer")).status).toBe(401);
    const token = await new SignJWT({ sub: "bounds", scope: "subscribe" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(SECRET));
    const withToken = await rawClient(gw.url);
    withToken.write(`${postHead("/api/v1/subscriptions", 1, `Authorization: Bearer ${token}\r\n`)}{`);
    const answer = parseAnswer(await withToken.until(answered, "an answer"));
    expect(answer.status).toBe(400);
    expect(answer.body.error?.code).toBe("invalid_json");
  });
});

describe("requests in flight per client address (LIMIT_REQUESTS_IN_FLIGHT_PER_IP)", () => {
  let gw: TestGateway;
  const opened: SseConnection[] = [];
  beforeAll(async () => {
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: { LIMIT_REQUESTS_IN_FLIGHT_PER_IP: "3" },
    });
  });
  afterAll(async () => {
    for (const stream of opened) stream.close();
    await gw?.close();
  });

  it("counts requests until they are answered: the fourth is 429; an open stream does not count", async () => {
    // Three slow bodies hold three places.
    const slow = [];
    for (let i = 0; i < 3; i++) {
      const client = await rawClient(gw.url);
      client.write(`${postHead("/api/v1/sessions", 30)}{"message":`);
      slow.push(client);
    }
    const waitForRefusal = async () => {
      for (;;) {
        const refused = await postJson(`${gw.url}/api/v1/sessions`, { message: "hi [tokens=1]" });
        if (refused.status === 429) return refused;
        // The slow requests may not have reached the gateway yet.
        expect(refused.status).toBe(201);
        await sleep(20);
      }
    };
    const refused = await waitForRefusal();
    expect(refused.body).toEqual({ error: { code: "too_many_requests", message: expect.any(String) } });
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    // Health checks are never refused.
    const health = await fetch(`${gw.url}/healthz`);
    expect(health.status).toBe(200);
    await health.arrayBuffer();

    // One slow body completes: its answer gives its place back.
    const first = slow[0]!;
    first.write(' "done [tokens=1]"}'.padEnd(30 - '{"message":'.length, " "));
    expect(parseAnswer(await first.until(answered, "the completed request's answer")).status).toBe(201);
    // Open streams are counted by the connection limits, not here: two streams and a request fit.
    for (let i = 0; i < 2; i++) {
      const stream = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`);
      opened.push(stream);
      expect(stream.status).toBe(200);
    }
    let accepted = await postJson(`${gw.url}/api/v1/sessions`, { message: "hi [tokens=1]" });
    for (let attempt = 0; accepted.status === 429 && attempt < 200; attempt++) {
      await sleep(20);
      accepted = await postJson(`${gw.url}/api/v1/sessions`, { message: "hi [tokens=1]" });
    }
    expect(accepted.status).toBe(201);
    for (const client of slow) client.close();
  });
});
