import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterEach, describe, expect, inject, it } from "vitest";
import {
  collectUntilClosed,
  freePort,
  getJson,
  openSse,
  pingRedis,
  postJson,
  randomPrefix,
  request,
  startRedis,
} from "../helpers/index.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(handler: (req: import("node:http").IncomingMessage, res: ServerResponse) => void) {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("freePort and randomPrefix", () => {
  it("gives a usable port and distinct prefixes", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const prefixes = new Set(Array.from({ length: 100 }, () => randomPrefix()));
    expect(prefixes.size).toBe(100);
    for (const prefix of prefixes) expect(prefix).toMatch(/^t:[a-z0-9]{8}:$/);
  });
});

describe("redis-server helpers", () => {
  it("provides the shared redis URL to tests", async () => {
    const url = inject("redisUrl");
    expect(url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = new Redis(url);
    cleanups.push(() => void client.disconnect());
    const key = `${randomPrefix()}k`;
    await client.set(key, "v");
    expect(await client.get(key)).toBe("v");
  });

  it("starts, stops and restarts on the same port; a client reconnects", async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const firstPid = redis.pid;
    expect(firstPid).toBeGreaterThan(0);

    const client = new Redis(redis.url, { retryStrategy: () => 50 });
    cleanups.push(() => void client.disconnect());
    await client.set("k", "before");
    expect(await client.get("k")).toBe("before");

    await redis.stop();
    expect(await pingRedis(redis.port)).toBe(false);
    await redis.stop(); // idempotent

    await redis.restart();
    expect(redis.pid).not.toBe(firstPid);
    expect(await pingRedis(redis.port)).toBe(true);
    // ioredis queues the command while it reconnects; the data did not survive (no persistence).
    expect(await client.get("k")).toBeNull();
    await client.set("k", "after");
    expect(await client.get("k")).toBe("after");
  });
});

describe("openSse", () => {
  it("parses retry, comments and events, and resolves closed when the server ends", async () => {
    const url = await listen((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.end('retry: 1000\n: ping\n\nid: 1-0\nevent: a:token\ndata: {"x":1}\n\n');
    });
    const conn = await openSse(url);
    await conn.closed;
    expect(conn.status).toBe(200);
    expect(conn.headers["content-type"]).toBe("text/event-stream");
    expect(conn.retry).toBe(1000);
    expect(conn.comments).toEqual(["ping"]);
    expect(conn.events).toEqual([{ id: "1-0", event: "a:token", data: '{"x":1}' }]);
    expect(conn.lastId()).toBe("1-0");
    expect(conn.isClosed()).toBe(true);
    expect(conn.error()).toBeUndefined();
  });

  it("sends Last-Event-ID and custom headers; defaults the event name to message", async () => {
    const url = await listen((req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`data: ${req.headers["last-event-id"]}|${req.headers["x-test"]}\n\n`);
    });
    const conn = await collectUntilClosed(url, { lastEventId: "5-1", headers: { "x-test": "yes" } });
    expect(conn.events).toEqual([{ event: "message", data: "5-1|yes" }]);
    expect(conn.lastId()).toBeUndefined();
  });

  it("keeps a non-SSE body raw", async () => {
    const url = await listen((_req, res) => {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"code":"not_found","message":"no"}}');
    });
    const conn = await collectUntilClosed(url);
    expect(conn.status).toBe(404);
    expect(conn.events).toEqual([]);
    expect(JSON.parse(conn.raw()).error.code).toBe("not_found");
  });

  it("waitFor rejects with counts and the last events on timeout, and early when the stream ends", async () => {
    let response: ServerResponse | undefined;
    const url = await listen((_req, res) => {
      response = res;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("event: a:start\ndata: {}\n\n");
    });
    const conn = await openSse(url);
    cleanups.push(() => conn.close());
    await expect(conn.waitForEvent("a:start")).resolves.toEqual({ event: "a:start", data: "{}" });
    await expect(conn.waitForEvent("a:done", 100)).rejects.toThrow(
      /a:done.*within 100 ms: 1 events, 0 comments, stream open; last 1:\n {2}a:start: \{\}/s,
    );
    const pending = conn.waitFor((events) => events.length > 5, 5_000);
    response?.end();
    await expect(pending).rejects.toThrow(/ended before the condition held/);
  });

  it("pause stops reading so the server's writes back up; resume delivers everything", async () => {
    let response: ServerResponse | undefined;
    const url = await listen((_req, res) => {
      response = res;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": hello\n\n");
    });
    const conn = await openSse(url);
    cleanups.push(() => conn.close());
    await conn.waitFor(() => conn.comments.length === 1);
    const res = response as ServerResponse;

    conn.pause();
    const payload = "x".repeat(64 * 1024);
    const drainWithin = (ms: number) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          res.off("drain", onDrain);
          resolve(false);
        }, ms);
        const onDrain = () => {
          clearTimeout(timer);
          resolve(true);
        };
        res.once("drain", onDrain);
      });
    // Write until a refused write no longer drains: the kernel buffers are full because nobody reads.
    let written = 0;
    for (;;) {
      const accepted = res.write(`id: ${written}\ndata: ${payload}\n\n`);
      written++;
      expect(written).toBeLessThan(4096);
      if (!accepted && !(await drainWithin(200))) break;
    }
    const seenWhilePaused = conn.events.length;
    expect(seenWhilePaused).toBeLessThan(written);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(conn.events.length).toBe(seenWhilePaused);

    const drained = drainWithin(5_000);
    conn.resume();
    expect(await drained).toBe(true);
    await conn.waitFor((events) => events.length === written, 10_000);
    expect(conn.lastId()).toBe(String(written - 1));
  });
});

describe("JSON helpers", () => {
  it("posts, gets and sends raw bodies", async () => {
    const url = await listen((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
      });
      req.on("end", () => {
        res.writeHead(req.url === "/empty" ? 204 : 200, {
          "content-type": "application/json",
          "x-m": req.method,
        });
        if (req.url === "/empty") return res.end();
        res.end(JSON.stringify({ method: req.method, type: req.headers["content-type"] ?? null, body }));
      });
    });
    const posted = await postJson(`${url}/a`, { a: 1 }, { "x-h": "1" });
    expect(posted.status).toBe(200);
    expect(posted.headers.get("x-m")).toBe("POST");
    expect(posted.body).toEqual({ method: "POST", type: "application/json", body: '{"a":1}' });

    const got = await getJson(`${url}/b`);
    expect(got.body).toEqual({ method: "GET", type: null, body: "" });

    const raw = await request("POST", `${url}/c`, { rawBody: "{bad" });
    expect(raw.body.body).toBe("{bad");

    const empty = await request("DELETE", `${url}/empty`);
    expect(empty.status).toBe(204);
    expect(empty.body).toBeUndefined();
  });
});
