/**
 * Instances dying and draining, with real gateway processes on one Redis:
 * - SIGKILL mid-run: once the lease lapses another instance ends the session with exactly one
 *   `error {code:"interrupted"}`.
 * - SIGTERM: the instance drains (readiness 503, listener closed, streams told to reconnect), lets its
 *   run finish with `done`, exits 0; a client resumes on another instance with nothing lost.
 */
import net from "node:net";
import { afterEach, describe, expect, inject, it } from "vitest";
import {
  closedWithin,
  type GatewayProcess,
  getJson,
  openSse,
  postJson,
  randomPrefix,
  type SseEvent,
  startGatewayProcess,
} from "../helpers/index.js";

const TERMINAL = new Set(["done", "error", "cancelled"]);
const SLOW_RUN = { SIMULATED_TOKENS_PER_SECOND: "20" };

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startGateway(prefix: string, env: Record<string, string>): Promise<GatewayProcess> {
  const gateway = await startGatewayProcess({
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: "warn",
    LEASE_MS: "1000",
    ...env,
  });
  cleanups.push(() => gateway.stop());
  return gateway;
}

async function readWholeSession(url: string, id: string): Promise<SseEvent[]> {
  const stream = await openSse(`${url}/api/v1/sessions/${id}/stream`);
  cleanups.push(() => stream.close());
  expect(stream.status).toBe(200);
  await closedWithin(stream, 10_000);
  return stream.events;
}

const comparePositions = (a: string, b: string): number => {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am === bm ? as - bs : am - bm;
};

/** Sends `GET path` headers without the final blank line; `finish()` completes the request and resolves with the raw response. */
function partialRequest(port: number, path: string) {
  const socket = net.connect(port, "127.0.0.1");
  let response = "";
  const ended = new Promise<void>((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      response += chunk.toString("utf8");
      if (/\r\n0\r\n\r\n$/.test(response) || /content-length: \d+\r\n/i.test(response)) resolve();
    });
    socket.on("close", () => resolve());
    socket.on("error", () => resolve());
  });
  const connected = new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  return {
    async start() {
      await connected;
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`);
    },
    async finish(): Promise<string> {
      socket.write("\r\n");
      await ended;
      await new Promise((resolve) => setTimeout(resolve, 50));
      socket.destroy();
      return response;
    },
    destroy(): void {
      socket.destroy();
    },
  };
}

describe("crash and drain", () => {
  it("a killed instance's run is ended as interrupted by another instance, exactly once", async () => {
    const prefix = randomPrefix();
    const a = await startGateway(prefix, SLOW_RUN);
    const b = await startGateway(prefix, {});

    const created = await postJson(`${a.url}/api/v1/sessions`, { message: "a long one [tokens=1000]" });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    const onA = await openSse(`${a.url}${created.body.streamUrl}`);
    cleanups.push(() => onA.close());
    await onA.waitFor((events) => events.filter((e) => e.event === "token").length >= 3, 10_000);

    const killedAt = Date.now();
    a.kill("SIGKILL");
    expect((await a.exited).signal).toBe("SIGKILL");

    const onB = await openSse(`${b.url}/api/v1/sessions/${id}/stream`);
    cleanups.push(() => onB.close());
    const error = await onB.waitForEvent("error", 15_000);
    const endedAfterMs = Date.now() - killedAt;
    expect(JSON.parse(error.data)).toMatchObject({ code: "interrupted" });
    expect(typeof JSON.parse(error.data).message).toBe("string");
    await closedWithin(onB, 5_000);
    expect(onB.events.filter((e) => TERMINAL.has(e.event))).toHaveLength(1);
    expect(onB.events[onB.events.length - 1]!.event).toBe("error");
    // Ended within a few seconds of the lease (1 s) lapsing (the wait above is the bound; no timing assertion).
    console.info(`interrupted ${endedAfterMs} ms after SIGKILL (LEASE_MS=1000)`);

    // Later, a full re-read still shows one terminal event, and it is the last.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const all = await readWholeSession(b.url, id);
    expect(all[0]!.event).toBe("start");
    expect(all.filter((e) => TERMINAL.has(e.event)).map((e) => e.event)).toEqual(["error"]);
    expect(all[all.length - 1]!.event).toBe("error");
    expect(all.filter((e) => e.event === "token").length).toBeGreaterThanOrEqual(3);
    expect(all.filter((e) => e.event === "token").length).toBeLessThan(1000);

    const info = await getJson(`${b.url}/api/v1/sessions/${id}`);
    expect(info.status).toBe(200);
    expect(info.body.status).toBe("error");
    expect(info.body.lastEventId).toBe(all[all.length - 1]!.id);
  }, 40_000);

  it("SIGTERM drains: readiness 503, the run finishes with done, streams resume elsewhere, exit 0", async () => {
    const prefix = randomPrefix();
    // A 40-token run at 20 tokens/s: about 2 s, longer than the 500 ms drain of the streams.
    const c = await startGateway(prefix, { ...SLOW_RUN, DRAIN_MS: "500" });
    const b = await startGateway(prefix, {});

    const created = await postJson(`${c.url}/api/v1/sessions`, { message: "drain me [tokens=40]" });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    const client = await openSse(`${c.url}${created.body.streamUrl}`);
    cleanups.push(() => client.close());
    await client.waitFor((events) => events.filter((e) => e.event === "token").length >= 2, 10_000);

    // A request already on its way when the signal lands (headers not yet complete) is still answered.
    const inFlight = partialRequest(c.port, "/readyz");
    cleanups.push(() => inFlight.destroy());
    await inFlight.start();
    expect((await getJson(`${c.url}/readyz`)).status).toBe(200);

    c.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const readyResponse = await inFlight.finish();
    expect(readyResponse).toMatch(/^HTTP\/1\.1 503 /);
    expect(readyResponse).toContain('"code":"draining"');
    // New connections are refused (the listener is closed) or told 503: never "ready".
    const fresh = await fetch(`${c.url}/readyz`).then(
      (res) => res.status,
      () => "refused",
    );
    expect([503, "refused"]).toContain(fresh);

    // The open stream is closed by the instance during the drain, before the run ends.
    await closedWithin(client, 5_000);
    const firstPart = client.events;
    expect(firstPart.some((e) => TERMINAL.has(e.event))).toBe(false);
    expect(client.error()).toBeUndefined();
    const lastId = client.lastId();
    expect(lastId).toBeDefined();

    // The client resumes on B from where it was: nothing lost, nothing twice.
    const resumed = await openSse(`${b.url}/api/v1/sessions/${id}/stream`, { lastEventId: lastId! });
    cleanups.push(() => resumed.close());
    expect(resumed.status).toBe(200);
    await closedWithin(resumed, 15_000);
    const all = [...firstPart, ...resumed.events];
    const ids = all.map((e) => e.id!);
    for (let k = 1; k < ids.length; k++) expect(comparePositions(ids[k - 1]!, ids[k]!)).toBeLessThan(0);
    expect(all.map((e) => e.event)).toEqual(["start", ...Array(40).fill("token"), "usage", "done"]);
    expect(JSON.parse(all[all.length - 1]!.data)).toMatchObject({ session_id: id, finish_reason: "stop" });

    const exit = await c.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    // The whole history agrees, from the surviving instance.
    const whole = await readWholeSession(b.url, id);
    expect(whole.map((e) => e.id)).toEqual(ids);
    expect((await getJson(`${b.url}/api/v1/sessions/${id}`)).body.status).toBe("done");
  }, 40_000);
});
