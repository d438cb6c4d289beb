/**
 * SseWriter on a real socket: the head and the first `retry:` line go out at once; a client already gone
 * closes the stream at once. `retry:` and heartbeats never make a block of their own (a block without
 * data is an empty message to fetch-based clients), on opening, while idle, and in the drain's goodbye.
 */
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createParser } from "eventsource-parser";
import { afterEach, describe, expect, it } from "vitest";
import { OpenStreams } from "../../src/sse/open-streams.js";
import { type CloseReason, SseWriter, type SseWriterHooks } from "../../src/sse/writer.js";

const OPTIONS = Object.freeze({ heartbeatMs: 60_000, retryMs: 1234, slowClientTimeoutMs: 60_000 });

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A server whose first request is handed to the test; the client request is returned too. */
async function exchange(): Promise<{ res: ServerResponse; client: ReturnType<typeof get> }> {
  let handOver: (res: ServerResponse) => void = () => {};
  const handled = new Promise<ServerResponse>((resolve) => {
    handOver = resolve;
  });
  server = createServer((_req, res) => handOver(res));
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const client = get({ host: "127.0.0.1", port, path: "/" });
  client.on("error", () => {});
  return { res: await handled, client };
}

function recordingHooks() {
  const closes: CloseReason[] = [];
  const hooks: SseWriterHooks = { onDrain() {}, onClose: (reason) => closes.push(reason) };
  return { hooks, closes };
}

describe("SseWriter.start", () => {
  it("sends the head with the extra headers, then the retry line", async () => {
    const { res, client } = await exchange();
    const { hooks, closes } = recordingHooks();
    const writer = new SseWriter(res, OPTIONS, hooks);
    const response = new Promise<IncomingMessage>((resolve) => client.once("response", resolve));
    writer.start({ "X-Request-Id": "abc" });
    const received = await response;
    expect(received.statusCode).toBe(200);
    expect(received.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(received.headers["x-request-id"]).toBe("abc");
    const first = await new Promise<string>((resolve) =>
      received.once("data", (chunk: Buffer) => resolve(chunk.toString("utf8"))),
    );
    expect(first).toBe("retry: 1234\n");
    expect(writer.isOpen).toBe(true);
    writer.end();
    expect(closes).toEqual(["server"]);
  });

  it("closes at once when the client left while the stream was being set up", async () => {
    const { res, client } = await exchange();
    const closed = new Promise<void>((resolve) => res.once("close", resolve));
    client.destroy();
    await closed;
    const { hooks, closes } = recordingHooks();
    const writer = new SseWriter(res, OPTIONS, hooks);
    writer.start();
    expect(writer.isOpen).toBe(false);
    expect(closes).toEqual(["client"]);
  });
});

/** The whole body the client receives, once the server ends it. */
function bodyOf(client: ReturnType<typeof get>): Promise<string> {
  return new Promise((resolve, reject) => {
    client.once("response", (received) => {
      let text = "";
      received.setEncoding("utf8");
      received.on("data", (chunk: string) => {
        text += chunk;
      });
      received.once("end", () => resolve(text));
      received.once("error", reject);
    });
  });
}

/**
 * The blocks that a blank line ends and that carry no `data:`: what @microsoft/fetch-event-source (every
 * such block) and httpx-sse (one that sets `retry`, or follows an `id`) hand over as empty messages.
 */
function blocksWithoutData(raw: string): string[] {
  const blocks = raw.split("\n\n").slice(0, -1);
  return blocks.filter((block) => !block.split("\n").some((line) => line.startsWith("data:")));
}

/** What eventsource-parser makes of the body: events, retries and comments, in order. */
function parsed(raw: string) {
  const seen: string[] = [];
  const parser = createParser({
    onEvent: (event) => seen.push(`event ${event.event ?? "message"} ${event.id ?? ""} ${event.data}`),
    onRetry: (ms) => seen.push(`retry ${ms}`),
    onComment: (comment) => seen.push(`comment ${comment.trim()}`),
  });
  parser.feed(raw);
  return seen;
}

const FRAME = 'id: 1-0\nevent: token\ndata: {"content":"a"}\n\n';

describe("SseWriter: retry and heartbeats join the next event's block", () => {
  it("opens, pings while idle, sends an event and says goodbye with no block of its own", async () => {
    const { res, client } = await exchange();
    const body = bodyOf(client);
    const writer = new SseWriter(res, OPTIONS, recordingHooks().hooks);
    writer.start();
    writer.ping();
    writer.ping();
    writer.send(FRAME);
    writer.ping();
    writer.end("retry: 777\n");
    const raw = await body;
    expect(raw).toBe(`retry: 1234\n: ping\n: ping\n${FRAME}: ping\nretry: 777\n`);
    expect(blocksWithoutData(raw)).toEqual([]);
    expect(parsed(raw)).toEqual([
      "retry 1234",
      "comment ping",
      "comment ping",
      'event token 1-0 {"content":"a"}',
      "comment ping",
      "retry 777",
    ]);
  });

  it("a draining instance ends each stream with a last retry line, jittered around the given delay", async () => {
    const { res, client } = await exchange();
    const body = bodyOf(client);
    const streams = new OpenStreams();
    const writer = new SseWriter(res, OPTIONS, { onDrain() {}, onClose: () => streams.delete(writer) });
    streams.add(writer);
    writer.start();
    writer.send(FRAME);
    await streams.closeAll(0, 100_000);
    const raw = await body;
    expect(raw).toMatch(/^retry: 1234\nid: 1-0\nevent: token\ndata: \{"content":"a"\}\n\nretry: \d+\n$/);
    const last = Number(/retry: (\d+)\n$/.exec(raw)?.[1]);
    expect(last).toBeGreaterThanOrEqual(50_000);
    expect(last).toBeLessThanOrEqual(150_000);
    expect(blocksWithoutData(raw)).toEqual([]);
    expect(streams.size).toBe(0);
  });
});

describe("SseWriter: a client whose socket does not drain holds at most maxBufferedBytes", () => {
  it("stops taking past the bound, keeps what it took in order, and ends once the client drains it", async () => {
    const maxBufferedBytes = 256 * 1024;
    const { res, client } = await exchange();
    const response = new Promise<IncomingMessage>((resolve) => client.once("response", resolve));
    const { hooks, closes } = recordingHooks();
    let overflows = 0;
    const writer = new SseWriter(
      res,
      { ...OPTIONS, maxBufferedBytes },
      { ...hooks, onSlowClient: () => overflows++ },
    );
    writer.start();
    // The client reads nothing: its socket (and then the server's) fills up.
    const received = await response;
    received.pause();
    // 64 KiB frames, numbered, with a non-ASCII character so that bytes and characters differ.
    const frames: string[] = [];
    const frameOf = (i: number) =>
      `id: ${i}-0\nevent: token\ndata: {"content":"é${"x".repeat(64 * 1024)}"}\n\n`;
    let mostHeld = 0;
    for (let i = 0; i < 400 && writer.isOpen; i++) {
      const frame = frameOf(i);
      frames.push(frame);
      writer.send(frame);
      await new Promise((resolve) => setImmediate(resolve));
      mostHeld = Math.max(mostHeld, res.writableLength);
    }
    // 400 frames are 26 MB: what is held beyond the sockets' own buffers is the bound and one write.
    expect(mostHeld).toBeLessThanOrEqual(maxBufferedBytes + 2 * Buffer.byteLength(frameOf(0)));
    expect(writer.writable).toBe(false);
    // The client reads again: it gets a prefix of what was sent, in order, and then the end.
    let text = "";
    received.setEncoding("utf8");
    received.on("data", (chunk: string) => {
      text += chunk;
    });
    const ended = new Promise<void>((resolve) => received.once("end", resolve));
    received.resume();
    await ended;
    expect(text.startsWith("retry: 1234\n")).toBe(true);
    const body = text.slice("retry: 1234\n".length);
    const count = body.split("\n\n").length - 1;
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThan(frames.length);
    expect(body).toBe(frames.slice(0, count).join(""));
    expect(closes).toEqual(["slow"]);
    expect(overflows).toBe(1);
  });
});
