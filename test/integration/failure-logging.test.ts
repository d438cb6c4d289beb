/**
 * What a failed request leaves in the log, on a real gateway over its own redis-server. Expected
 * outages (a drain, an unreachable or silent store) are logged once, at warn, without a stack, whether
 * or not the request's body was read; an unexpected 5xx is logged at error with its stack, also when
 * it is answered before its body came.
 */
import http from "node:http";
import { Redis } from "ioredis";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freePort,
  getJson,
  logLines,
  openSse,
  postJson,
  type RedisServerHandle,
  startRedis,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

interface LogLine {
  level: number;
  msg: string;
  req?: { id?: string };
  res?: { statusCode: number | null };
  err?: { message?: string; stack?: string; code?: string };
  failure?: { code: string; message: string };
}

const WARN = 40;
const ERROR = 50;

/** Every line that names the request (its access log line, and a fault's "request failed" line). */
function linesOf(lines: LogLine[], requestId: string): LogLine[] {
  return lines.filter((line) => line.req?.id === requestId);
}

/** The lines that are not about one request at all (no req): a fault of the error writer has none. */
function faultLines(lines: LogLine[]): LogLine[] {
  return lines.filter((line) => line.msg === "request failed");
}

/** An expected outage's trace: one access log line at warn naming its code, nothing at error, no stack. */
function expectOneWarning(lines: LogLine[], requestId: string, code: string): void {
  const about = linesOf(lines, requestId);
  expect(about, JSON.stringify(lines)).toHaveLength(1);
  const [line] = about as [LogLine];
  expect(line.level, JSON.stringify(line)).toBe(WARN);
  expect(line.res?.statusCode).toBe(503);
  expect(line.failure?.code).toBe(code);
  expect(line.err, JSON.stringify(line)).toBeUndefined();
}

describe("failures in the log", () => {
  let redis: RedisServerHandle;
  let gw: TestGateway;
  let inspector: Redis;
  const log = logLines<LogLine>();

  beforeAll(async () => {
    redis = await startRedis();
    gw = await startTestGateway({
      redisUrl: redis.url,
      env: { LOG_LEVEL: "info", STORE_TIMEOUT_MS: "300" },
      logDestination: log.sink,
    });
    inspector = new Redis(redis.url, { maxRetriesPerRequest: null });
    inspector.on("error", () => {});
  });
  afterAll(async () => {
    inspector?.disconnect();
    await gw?.close();
    await redis?.dispose();
  });

  it("logs a drain's 503 once at warn without a stack, the body read or not", async () => {
    const id = `drain_${Date.now().toString(36)}`;
    gw.gateway.context.state.draining = true;
    try {
      // Both read the body before they refuse the new work: the hot append, and Express's POST /sessions.
      const append = await postJson(
        `${gw.url}/api/v1/sessions/${id}/events`,
        { events: [{ type: "token", data: { content: "x" } }] },
        { "x-request-id": `${id}-append` },
      );
      expect(append.status).toBe(503);
      expect(append.body.error.code).toBe("draining");
      const create = await postJson(
        `${gw.url}/api/v1/sessions`,
        { id, message: "hi" },
        { "x-request-id": `${id}-create` },
      );
      expect(create.status).toBe(503);
      expect(create.body.error.code).toBe("draining");
    } finally {
      gw.gateway.context.state.draining = false;
    }
    expectOneWarning(log.lines, `${id}-append`, "draining");
    expectOneWarning(log.lines, `${id}-create`, "draining");
    expect(faultLines(log.lines), "no request failed").toEqual([]);
    expect(log.lines.filter((line) => line.level >= ERROR)).toEqual([]);
  });

  it("logs a silent store's 503 (the body read, the store call timed out) once at warn without a stack", async () => {
    const id = `silent_${Date.now().toString(36)}`;
    process.kill(redis.pid, "SIGSTOP");
    let answer: Awaited<ReturnType<typeof postJson>>;
    try {
      answer = await postJson(
        `${gw.url}/api/v1/sessions/${id}/events`,
        { events: [{ type: "token", data: { content: "late" } }] },
        { "x-request-id": `${id}-append` },
      );
    } finally {
      process.kill(redis.pid, "SIGCONT");
    }
    expect(answer.status, answer.text).toBe(503);
    expect(answer.body.error.code).toBe("unavailable");
    expectOneWarning(log.lines, `${id}-append`, "unavailable");
    expect(faultLines(log.lines), "no request failed").toEqual([]);
    expect(log.lines.filter((line) => line.level >= ERROR)).toEqual([]);
  });

  it("logs an unexpected 500 at error with its stack (a key of the wrong type in Redis)", async () => {
    const id = `wrongtype_${Date.now().toString(36)}`;
    // Another program writing a plain string where the session's hash belongs: every command on it fails.
    await inspector.set(`${gw.prefix}s:{${id}}:meta`, "not a hash");
    const append = await postJson(
      `${gw.url}/api/v1/sessions/${id}/events`,
      { events: [{ type: "token", data: { content: "x" } }] },
      { "x-request-id": `${id}-append` },
    );
    expect(append.status).toBe(500);
    expect(append.body.error.code).toBe("internal");
    expect(append.text).not.toContain("WRONGTYPE");
    const read = await getJson(`${gw.url}/api/v1/sessions/${id}`, { "x-request-id": `${id}-get` });
    expect(read.status).toBe(500);
    // One "request failed" line each (the writer's, with the stack), and each one's access line at error.
    const failed = log.lines.filter((line) => line.msg === "request failed");
    expect(failed, JSON.stringify(failed)).toHaveLength(2);
    for (const line of failed) {
      expect(line.level).toBe(ERROR);
      expect(line.err?.stack ?? "").toMatch(/WRONGTYPE[\s\S]*\n\s+at /);
    }
    for (const requestId of [`${id}-append`, `${id}-get`]) {
      const access = linesOf(log.lines, requestId);
      expect(
        access.map((line) => [line.level, line.res?.statusCode]),
        requestId,
      ).toEqual([[ERROR, 500]]);
    }
  });
});

describe("an unexpected 5xx answered before its body came", () => {
  const log = logLines<LogLine>();
  let gw: TestGateway;

  beforeAll(async () => {
    // A key set nobody serves: every token's key must be fetched, and cannot be.
    const jwksPort = await freePort();
    gw = await startTestGateway({
      env: { LOG_LEVEL: "info", AUTH_JWKS_URL: `http://127.0.0.1:${jwksPort}/jwks.json` },
      logDestination: log.sink,
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it("is logged at error with its stack, and the connection closes", async () => {
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const kid = (await exportJWK(publicKey)).n?.slice(0, 8) ?? "k1";
    const token = await new SignJWT({ scope: "publish" })
      .setProtectedHeader({ alg: "RS256", kid })
      .setSubject("someone")
      .setExpirationTime("1h")
      .sign(privateKey);
    // The head and a part of the body: the gateway answers on the head, before the rest comes.
    const answer = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }>(
      (resolve, reject) => {
        const req = http.request(`${gw.url}/api/v1/sessions/early/events`, {
          method: "POST",
          agent: false,
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            "content-length": "1000",
            "x-request-id": "early-5xx",
          },
        });
        req.on("error", reject);
        req.on("response", (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text });
            req.destroy();
          });
        });
        req.write('{"events":[');
      },
    );
    expect(answer.status, answer.text).toBe(503);
    expect(JSON.parse(answer.text).error.code).toBe("auth_unavailable");
    expect(answer.headers.connection).toBe("close");
    const failed = log.lines.filter((line) => line.msg === "request failed");
    expect(failed, JSON.stringify(log.lines)).toHaveLength(1);
    expect(failed[0]!.level).toBe(ERROR);
    expect(failed[0]!.err?.code).toBe("auth_unavailable");
    expect(failed[0]!.err?.stack ?? "").toMatch(/\n\s+at /);
  });
});

describe("a catch-up read that fails in an outage", () => {
  let redis: RedisServerHandle;
  let gw: TestGateway;
  let inspector: Redis;
  const log = logLines<LogLine & { sessionId?: string }>();

  beforeAll(async () => {
    redis = await startRedis();
    gw = await startTestGateway({
      redisUrl: redis.url,
      env: { LOG_LEVEL: "debug", STORE_TIMEOUT_MS: "200" },
      logDestination: log.sink,
    });
    inspector = new Redis(redis.url, { maxRetriesPerRequest: null });
    inspector.on("error", () => {});
  });
  afterAll(async () => {
    await inspector?.call("CLIENT", "UNPAUSE").catch(() => {});
    inspector?.disconnect();
    await gw?.close();
    await redis?.dispose();
  });

  it("is logged once at warn without a stack, its retries at debug, and the reader catches up after", async () => {
    const id = `catchup_${Date.now().toString(36)}`;
    const token = (content: string) => ({ events: [{ type: "token", data: { content } }] });
    for (const content of ["a", "b", "c"]) {
      expect((await postJson(`${gw.url}/api/v1/sessions/${id}/events`, token(content))).status).toBe(202);
    }
    const stream = await openSse(`${gw.url}/api/v1/sessions/${id}/stream`);
    try {
      await stream.waitFor((events) => events.filter((e) => e.event === "token").length === 3);
      const failures = () =>
        log.lines.filter((line) => line.sessionId === id && /catch-up read/.test(line.msg));
      // The store stops running scripts (reads are scripts) while it still answers, and the notification
      // link reconnects: every reader re-reads from the store, and those reads time out, again and again.
      await inspector.call("CLIENT", "PAUSE", "60000", "WRITE");
      try {
        await inspector.call("CLIENT", "KILL", "TYPE", "pubsub");
        await waitFor(() => failures().length >= 3, "three failed catch-up reads");
      } finally {
        await inspector.call("CLIENT", "UNPAUSE");
      }
      expect((await postJson(`${gw.url}/api/v1/sessions/${id}/events`, token("d"))).status).toBe(202);
      await stream.waitFor((events) => events.some((e) => e.data.includes('"d"')));
      const [first, ...retries] = failures();
      expect(first?.level, JSON.stringify(first)).toBe(WARN);
      expect(first?.err?.code).toBe("unavailable");
      for (const line of retries) expect(line.level, JSON.stringify(line)).toBe(20);
      for (const line of failures()) expect(line.err?.stack ?? "", JSON.stringify(line)).toBe("");
      expect(log.lines.filter((line) => line.level >= ERROR)).toEqual([]);
      const tokens = stream.events.filter((e) => e.event === "token").map((e) => JSON.parse(e.data).content);
      expect(tokens).toEqual(["a", "b", "c", "d"]);
    } finally {
      stream.close();
    }
  });
});

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
