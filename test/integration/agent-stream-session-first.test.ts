/**
 * `POST /api/v1/agent/stream` names its session (`X-Session-Id`) only once the session exists in the
 * store: the moment the head arrives, another instance on the same Redis knows the session, even while
 * the upstream has not answered yet. The instance that runs it reaches Redis over a slow link (every
 * command it sends arrives `LINK_DELAY_MS` late), so a head sent before the session's creation was
 * acknowledged would reach the client long before the creation reaches Redis.
 */
import type { IncomingMessage } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type OpenAIFixture, startOpenAIFixture } from "../fixtures/openai-server.js";
import {
  agentStreamRequest,
  closedWithin,
  type GatewayProcess,
  getJson,
  openSse,
  randomPrefix,
  startGatewayProcess,
} from "../helpers/index.js";

/** The upstream answers (head and all) only after this long: the run's session has no events until then. */
const UPSTREAM_ANSWER_AFTER_MS = 1_000;
const RUNS = 3;
/**
 * How late instance A's commands reach Redis: far longer than a status read from the test through
 * instance B (a few ms on loopback), so a head sent ahead of the creation would be found out.
 */
const LINK_DELAY_MS = 300;

/**
 * A TCP proxy to Redis that delivers what its clients send `delayMs` late, in order (replies come back
 * at once): a Redis on the far side of a slow link.
 */
async function slowLinkTo(
  redisUrl: string,
  delayMs: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const target = new URL(redisUrl);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const redis = connect({ host: target.hostname, port: Number(target.port) });
    sockets.add(client).add(redis);
    client.on("data", (chunk) => {
      // Timers of one duration fire in the order they were set: the stream stays in order.
      setTimeout(() => {
        if (!redis.destroyed) redis.write(chunk);
      }, delayMs);
    });
    redis.pipe(client);
    const closeBoth = () => {
      client.destroy();
      redis.destroy();
      sockets.delete(client);
      sockets.delete(redis);
    };
    client.on("close", closeBoth).on("error", closeBoth);
    redis.on("close", closeBoth).on("error", closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the proxy has no port");
  return {
    url: `redis://127.0.0.1:${address.port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Posts a run and resolves with its response as soon as the head arrives (the body is left unread). */
function postAgentStream(url: string, body: unknown): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const { req, payload } = agentStreamRequest(url, body);
    req.once("error", reject);
    req.once("response", resolve);
    req.end(payload);
  });
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      text += chunk;
    });
    res.once("end", () => resolve(text));
    res.once("error", reject);
  });
}

describe("agent stream: the session exists before it is named", () => {
  let fixture: OpenAIFixture;
  let a: GatewayProcess;
  let b: GatewayProcess;
  let link: Awaited<ReturnType<typeof slowLinkTo>>;

  beforeAll(async () => {
    fixture = await startOpenAIFixture();
    link = await slowLinkTo(inject("redisUrl"), LINK_DELAY_MS);
    const env = {
      REDIS_URL: inject("redisUrl"),
      REDIS_KEY_PREFIX: randomPrefix(),
      LOG_LEVEL: "warn",
      OPENAI_API_KEY: "test-key",
      OPENAI_BASE_URL: fixture.url,
      DEFAULT_MODEL: "gpt-test",
    };
    // A runs the runs, over the slow link; B, next to Redis, is where the client looks them up.
    [a, b] = await Promise.all([
      startGatewayProcess({ ...env, REDIS_URL: link.url }),
      startGatewayProcess(env),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await link?.close();
    await fixture?.close();
  });

  it("another instance finds the session (status and stream) the moment the head arrives", async () => {
    for (let run = 0; run < RUNS; run++) {
      const tokens = ["slow", " upstream", ` run ${run}`];
      fixture.script({ tokens, answerAfterMs: UPSTREAM_ANSWER_AFTER_MS });
      const res = await postAgentStream(a.url, { message: "hello" });
      expect(res.statusCode).toBe(200);
      const id = res.headers["x-session-id"];
      expect(typeof id).toBe("string");

      // At once, before anything of the run was read: the upstream has not answered yet, and A's
      // commands are still on their way to Redis if A named the session before Redis had it.
      const [info, stream] = await Promise.all([
        getJson(`${b.url}/api/v1/sessions/${id}`),
        openSse(`${b.url}/api/v1/sessions/${id}/stream`),
      ]);
      expect(info.status, info.text).toBe(200);
      expect(info.body).toMatchObject({ id, status: "running", model: "gpt-test" });
      expect(stream.status, stream.raw()).toBe(200);

      // Both readers then get the whole run.
      const [raw] = await Promise.all([readAll(res), closedWithin(stream)]);
      expect(raw).toContain("event: done");
      const text = stream.events
        .filter((event) => event.event === "token")
        .map((event) => (JSON.parse(event.data) as { content: string }).content)
        .join("");
      expect(text).toBe(tokens.join(""));
      expect(stream.events.at(-1)?.event).toBe("done");
    }
  });
});
