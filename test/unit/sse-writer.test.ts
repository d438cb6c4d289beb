/** SseWriter.start on a real socket: the head and the first `retry:` go out; a client already gone closes the stream at once. */
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
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
    expect(first).toBe("retry: 1234\n\n");
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
