/**
 * Redis connection options: an ACL user (`redis://user:password@host:port`), key prefixes that isolate
 * deployments sharing one Redis, and TLS (`rediss://`) with a private CA given to the gateway process
 * through NODE_EXTRA_CA_CERTS (the gateway has no TLS option of its own).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntilClosed,
  freePort,
  type GatewayProcess,
  getJson,
  killOnExit,
  openSse,
  postJson,
  randomPrefix,
  startGatewayProcess,
  startTestGateway,
  type TestGateway,
} from "../helpers/index.js";

const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";
const PASSWORD = "s3cret";
const READY_TIMEOUT_MS = 10_000;
const WAIT_MS = 15_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface CustomRedis {
  port: number;
  output: () => string;
  stop(): Promise<void>;
}

/** A redis-server with extra arguments; `ready(port)` says when it answers. */
async function startCustomRedis(
  port: number,
  args: string[],
  ready: (port: number) => Promise<boolean>,
): Promise<CustomRedis> {
  const dir = mkdtempSync(join(tmpdir(), "sse-gw-redis-auth-"));
  const child: ChildProcess = spawn(
    REDIS_BIN,
    [
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--loglevel",
      "warning",
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  killOnExit(child);
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });
  const stop = async () => {
    if (!hasExited) {
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(5_000).then(() => child.kill("SIGKILL"))]);
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await ready(port))) {
    if (hasExited || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server ${args.join(" ")} did not become ready:\n${output.slice(-3000)}`);
    }
    await sleep(50);
  }
  return { port, output: () => output, stop };
}

/** Sends raw RESP commands over `socket` and resolves with the reply text once `expect` is in it. */
function exchange(
  open: () => import("node:net").Socket,
  commands: string,
  expect: string,
  timeoutMs = 500,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = open();
    let reply = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("error", () => finish(false));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("latin1");
      if (reply.includes(expect)) finish(true);
      else if (reply.startsWith("-")) finish(false);
    });
    socket.write(commands);
  });
}

const sessionEvents = async (url: string, id: string) => {
  const stream = await collectUntilClosed(`${url}/api/v1/sessions/${id}/stream`, { timeoutMs: WAIT_MS });
  return stream.events.map((event) => event.event);
};

describe("Redis with an ACL user, and key prefixes sharing it", () => {
  let redis: CustomRedis;
  let url: string;
  const gateways: TestGateway[] = [];

  beforeAll(async () => {
    const port = await freePort();
    redis = await startCustomRedis(
      port,
      [
        "--port",
        String(port),
        "--user",
        "default",
        "off",
        "--user",
        "gw",
        "on",
        `>${PASSWORD}`,
        "~*",
        "&*",
        "+@all",
      ],
      (p) =>
        exchange(
          () => netConnect({ port: p, host: "127.0.0.1" }),
          `AUTH gw ${PASSWORD}\r\nPING\r\n`,
          "+PONG",
        ),
    );
    url = `redis://gw:${PASSWORD}@127.0.0.1:${port}`;
  });
  afterAll(async () => {
    for (const gw of gateways) await gw.close();
    await redis?.stop();
  });

  it("refuses clients without the password (the server really requires it)", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = netConnect({ port: redis.port, host: "127.0.0.1" });
      let text = "";
      socket.setTimeout(2_000, () => {
        socket.destroy();
        reject(new Error(`no reply: ${text}`));
      });
      socket.on("error", reject);
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1");
        if (text.includes("\r\n")) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.write("GET anything\r\n");
    });
    expect(reply).toMatch(/^-NOAUTH/);
  });

  it("runs with REDIS_URL=redis://gw:s3cret@…, and a second prefix sees none of the first one's sessions", async () => {
    const first = await startTestGateway({ redisUrl: url, prefix: randomPrefix() });
    gateways.push(first);
    const second = await startTestGateway({ redisUrl: url, prefix: randomPrefix() });
    gateways.push(second);

    const ready = await getJson(`${first.url}/readyz`);
    expect(ready.status).toBe(200);
    const id = `acl-${randomBytes(4).toString("hex")}`;
    const created = await postJson(`${first.url}/api/v1/sessions`, { message: "hello [tokens=3]", id });
    expect(created.status, created.text).toBe(201);
    expect(await sessionEvents(first.url, id)).toEqual(["start", "token", "token", "token", "usage", "done"]);

    // The other deployment: unknown there, and free to use the same id for its own session.
    expect((await getJson(`${second.url}/api/v1/sessions/${id}`)).status).toBe(404);
    expect((await getJson(`${second.url}/api/v1/sessions/${id}/stream`)).status).toBe(404);
    const feed = await openSse(`${second.url}/api/v1/stream?sessions=@sessions`);
    const again = await postJson(`${second.url}/api/v1/sessions`, { message: "other [tokens=1]", id });
    expect(again.status, again.text).toBe(201);
    expect(await sessionEvents(second.url, id)).toEqual(["start", "token", "usage", "done"]);
    await feed.waitFor((events) => events.some((event) => event.event === "@sessions:ended"), WAIT_MS);
    feed.close();
    const created2 = feed.events.filter((event) => event.event === "@sessions:created");
    expect(created2).toHaveLength(1);
    // The first deployment's session is untouched.
    const info = await getJson(`${first.url}/api/v1/sessions/${id}`);
    expect(info.body.status).toBe("done");
    expect((await sessionEvents(first.url, id)).filter((type) => type === "token")).toHaveLength(3);

    // Every key either gateway wrote carries its prefix.
    const admin = new Redis(url);
    try {
      const keys = await admin.keys("*");
      expect(keys.length).toBeGreaterThan(0);
      const stray = keys.filter((key) => !key.startsWith(first.prefix) && !key.startsWith(second.prefix));
      expect(stray).toEqual([]);
      expect(keys.some((key) => key.startsWith(first.prefix))).toBe(true);
      expect(keys.some((key) => key.startsWith(second.prefix))).toBe(true);
    } finally {
      admin.disconnect();
    }
  });

  it("with a wrong password: not ready (503), no crash, new work refused with JSON", async () => {
    const wrong = await startTestGateway({
      redisUrl: `redis://gw:wrong-password@127.0.0.1:${redis.port}`,
      prefix: randomPrefix(),
    });
    gateways.push(wrong);
    expect((await getJson(`${wrong.url}/healthz`)).status).toBe(200);
    expect((await getJson(`${wrong.url}/readyz`)).status).toBe(503);
    const refused = await postJson(`${wrong.url}/api/v1/sessions`, { message: "hello [tokens=1]" });
    expect(refused.status).toBe(503);
    expect(refused.body).toEqual({ error: { code: "unavailable", message: expect.any(String) } });
    expect(refused.text).not.toContain("wrong-password");
    // Reads wait for Redis, then fail as unavailable, not as an internal error.
    const read = await getJson(`${wrong.url}/api/v1/sessions/some-session`);
    expect(read.status, read.text).toBe(503);
    expect(read.text).not.toContain("wrong-password");
  });
});

/** Debian's redis-server is built with TLS (`--tls-port`): a private CA, a server certificate for 127.0.0.1. */
describe("Redis over TLS (rediss://)", () => {
  let dir: string;
  let redis: CustomRedis | undefined;
  let gateway: GatewayProcess | undefined;
  let untrusting: GatewayProcess | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sse-gw-tls-"));
    const file = (name: string) => join(dir, name);
    const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
    openssl(
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sse-gw test CA"].concat([
        "-keyout",
        file("ca.key"),
        "-out",
        file("ca.pem"),
      ]),
    );
    openssl(
      [
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        file("server.key"),
      ].concat(["-out", file("server.csr")]),
    );
    writeFileSync(file("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    openssl(
      ["x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key")].concat([
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        file("server.ext"),
        "-out",
        file("server.pem"),
      ]),
    );

    const port = await freePort();
    redis = await startCustomRedis(
      port,
      ["--port", "0", "--tls-port", String(port), "--tls-cert-file", file("server.pem")]
        .concat(["--tls-key-file", file("server.key"), "--tls-ca-cert-file", file("ca.pem")])
        .concat(["--tls-auth-clients", "no", "--requirepass", PASSWORD]),
      (p) =>
        exchange(
          () =>
            tlsConnect({
              port: p,
              host: "127.0.0.1",
              servername: "localhost",
              ca: [readFileSync(file("ca.pem"), "utf8")],
            }),
          `AUTH ${PASSWORD}\r\nPING\r\n`,
          "+PONG",
        ),
    );
  });
  afterAll(async () => {
    await gateway?.stop();
    await untrusting?.stop();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("runs over rediss:// when the CA is trusted (NODE_EXTRA_CA_CERTS), and is not ready when it is not", async () => {
    const port = redis!.port;
    const prefix = randomPrefix();
    gateway = await startGatewayProcess({
      REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:${port}`,
      REDIS_KEY_PREFIX: prefix,
      NODE_EXTRA_CA_CERTS: join(dir, "ca.pem"),
      SIMULATED_TOKENS_PER_SECOND: "1000",
    });
    await waitReady(gateway.url);
    const created = await postJson(`${gateway.url}/api/v1/sessions`, { message: "over tls [tokens=3]" });
    expect(created.status, created.text).toBe(201);
    expect(await sessionEvents(gateway.url, created.body.id)).toEqual([
      "start",
      "token",
      "token",
      "token",
      "usage",
      "done",
    ]);

    // The same URL without the CA: the certificate is verified, so the gateway never becomes ready.
    untrusting = await startGatewayProcess({
      REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:${port}`,
      REDIS_KEY_PREFIX: prefix,
      NODE_EXTRA_CA_CERTS: "",
    });
    await sleep(500);
    expect((await getJson(`${untrusting.url}/readyz`)).status).toBe(503);
    const refused = await postJson(`${untrusting.url}/api/v1/sessions`, { message: "hi" });
    expect(refused.status).toBe(503);
  });
});

async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const res = await getJson(`${url}/readyz`);
    if (res.status === 200) return;
    if (Date.now() > deadline) throw new Error(`${url} not ready: ${res.text}`);
    await sleep(100);
  }
}
