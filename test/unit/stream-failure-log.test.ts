/**
 * A stream that fails after its head is out, as both error writers (the API's and the `/v1` door's)
 * log it, over a real HTTP server and a real pino logger: an outage (the store not ready) once at warn
 * with its message and no stack; a fault at warn with its stack; the stream's own AppError not again.
 * No gateway route fails a stream this way on demand, so the writers are called on a real response.
 */
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createOpenAIErrorWriter } from "../../src/doors/openai-errors.js";
import { createErrorWriter, type ErrorWriter, errors } from "../../src/errors.js";
import { logLines } from "../helpers/index.js";

interface LogLine {
  level: number;
  msg: string;
  req?: { id?: string };
  err?: { message?: string; stack?: string; code?: string };
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Opens a stream on a real server, then fails it with `error` through the writer; resolves once it ended. */
async function failOpenStream(writer: ErrorWriter, error: unknown): Promise<string> {
  const server = createServer((_req, res: ServerResponse) => {
    res.writeHead(200, { "Content-Type": "text/event-stream", "X-Request-Id": "stream-1" });
    res.write("data: first\n\n", () => writer.send(res, error, { "X-Request-Id": "stream-1" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  const answer = await fetch(`http://127.0.0.1:${port}/`);
  return answer.text();
}

const writers = {
  api: createErrorWriter,
  "/v1 door": createOpenAIErrorWriter,
} as const;

describe.each(Object.entries(writers))("a stream failing after it opened (%s writer)", (_name, create) => {
  it("logs an outage once at warn, its message without a stack", async () => {
    const log = logLines<LogLine>();
    const writer = create(pino({ level: "debug" }, log.sink), () => false);
    const text = await failOpenStream(writer, new Error("Connection is closed."));
    expect(text).toBe("data: first\n\n");
    expect(log.lines).toHaveLength(1);
    const [line] = log.lines as [LogLine];
    expect(line.level).toBe(40);
    expect(line.msg).toBe("stream failed after it opened");
    expect(line.req?.id).toBe("stream-1");
    expect(line.err?.code).toBe("unavailable");
    expect(line.err?.message).toBe("Connection is closed.");
    expect(line.err?.stack ?? "").toBe("");
  });

  it("logs a fault once at warn with its stack", async () => {
    const log = logLines<LogLine>();
    const writer = create(pino({ level: "debug" }, log.sink), () => true);
    await failOpenStream(writer, new TypeError("cannot read properties of undefined"));
    expect(log.lines).toHaveLength(1);
    const [line] = log.lines as [LogLine];
    expect(line.level).toBe(40);
    expect(line.err?.stack ?? "").toMatch(/^TypeError: cannot read[\s\S]*\n\s+at /);
  });

  it("does not log the stream's own answer again (an AppError)", async () => {
    const log = logLines<LogLine>();
    const writer = create(pino({ level: "debug" }, log.sink), () => false);
    await failOpenStream(writer, errors.unavailable());
    expect(log.lines).toEqual([]);
  });
});
