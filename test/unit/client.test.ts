/**
 * The browser client (src/client/index.ts) in Node, with the `eventsource` package's EventSource,
 * against a tiny fake gateway on port 0 that scripts the multiplexed framing and the JSON API.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { EventSource } from "eventsource";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type ConnectionState,
  type ConnectOptions,
  cancelSession,
  connect,
  createSubscription,
  type GatewayConnection,
  GatewayError,
  type StateInfo,
  startSession,
} from "../../src/client/index.js";

const RETRY_MS = 50;

interface StreamRequest {
  url: URL;
  lastEventId: string | undefined;
  res: ServerResponse;
}

interface ApiRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  body: unknown;
}

interface ApiAnswer {
  status: number;
  body?: unknown;
}

/** A scripted stand-in for the gateway; `onStream` and `onApi` are set per test. */
class FakeGateway {
  readonly streams: StreamRequest[] = [];
  readonly api: ApiRequest[] = [];
  onStream: (stream: StreamRequest, count: number) => void = () => {};
  onApi: (request: ApiRequest) => ApiAnswer = () => ({ status: 404, body: error("not_found", "no route") });
  private server: Server | null = null;
  port = 0;

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Like a crashed instance: every open stream is cut. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    if (req.method === "GET" && url.pathname === "/api/v1/stream") {
      const header = req.headers["last-event-id"];
      const stream: StreamRequest = {
        url,
        lastEventId: typeof header === "string" ? header : undefined,
        res,
      };
      this.streams.push(stream);
      this.onStream(stream, this.streams.length);
      return;
    }
    let text = "";
    for await (const chunk of req) text += String(chunk);
    const request: ApiRequest = {
      method: req.method ?? "",
      path: url.pathname,
      authorization: req.headers.authorization,
      body: text ? JSON.parse(text) : undefined,
    };
    this.api.push(request);
    const answer = this.onApi(request);
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(answer.body === undefined ? "" : JSON.stringify(answer.body));
  }
}

function error(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

function openStream(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(`retry: ${RETRY_MS}\n\n`);
}

function frame(event: string, data: unknown, id?: string): string {
  return `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
}

const gateways: FakeGateway[] = [];
const connections: GatewayConnection[] = [];

afterEach(async () => {
  for (const connection of connections.splice(0)) connection.close();
  for (const gateway of gateways.splice(0)) {
    for (const stream of gateway.streams) stream.res.destroy();
    await gateway.stop();
  }
});

async function fakeGateway(): Promise<FakeGateway> {
  const gateway = new FakeGateway();
  await gateway.start();
  gateways.push(gateway);
  return gateway;
}

function open(
  gateway: FakeGateway,
  options: Omit<ConnectOptions, "baseUrl" | "EventSource">,
): { connection: GatewayConnection; states: Array<[ConnectionState, StateInfo | undefined]> } {
  const states: Array<[ConnectionState, StateInfo | undefined]> = [];
  const connection = connect({
    baseUrl: gateway.baseUrl,
    EventSource,
    onState: (state, info) => states.push([state, info]),
    ...options,
  });
  connections.push(connection);
  return { connection, states };
}

describe("connect", () => {
  it("delivers each session's events to its handlers, in order, and closes on 204", async () => {
    const gateway = await fakeGateway();
    gateway.onStream = (stream, count) => {
      if (count > 1) {
        stream.res.writeHead(204).end();
        return;
      }
      openStream(stream.res);
      stream.res.write(
        frame("connected", { connectionId: "c_1", sessions: ["a", "b"] }) +
          frame("a:start", { model: "m", createdAt: "2024-01-01T00:00:00.000Z" }, "k1") +
          frame("a:token", { content: "Hel" }, "k2") +
          frame("b:token", { content: "Wor" }, "k3") +
          frame("a:tool_call", { name: "search" }, "k4") +
          frame("b:token", "not json", "k5") +
          frame("a:token", { content: "lo" }, "k6") +
          frame("b:token", { content: "ld" }, "k7") +
          frame("a:done", { session_id: "a", total_tokens: 2, finish_reason: "stop" }, "k8") +
          frame("b:error", { code: "interrupted", message: "lease expired" }, "k9"),
      );
      stream.res.end();
    };
    const all: string[] = [];
    const listenerErrors: unknown[] = [];
    const { connection, states } = open(gateway, {
      sessions: ["a", "b"],
      extraTypes: ["tool_call"],
      handlers: { onEvent: (type, _data, sessionId) => all.push(`${sessionId}:${type}`) },
      onListenerError: (e) => listenerErrors.push(e),
    });
    const a: string[] = [];
    const b: string[] = [];
    let done: unknown;
    let failure: unknown;
    let custom: unknown;
    connection.on("a", {
      onStart: (data) => a.push(`start:${data.model}`),
      onToken: (content) => a.push(content),
      onDone: (data) => {
        done = data;
      },
      onEvent: (type, data) => {
        if (type === "tool_call") custom = data;
      },
    });
    connection.on("b", {
      onToken: (content) => {
        b.push(content);
        if (content === "Wor") throw new Error("a buggy handler");
      },
      onError: (data) => {
        failure = data;
      },
    });

    await vi.waitFor(() => expect(states.at(-1)?.[0]).toBe("closed"), { timeout: 5000 });
    expect(a).toEqual(["start:m", "Hel", "lo"]);
    expect(b).toEqual(["Wor", "ld"]);
    expect(done).toEqual({ session_id: "a", total_tokens: 2, finish_reason: "stop" });
    expect(failure).toEqual({ code: "interrupted", message: "lease expired" });
    expect(custom).toEqual({ name: "search" });
    expect(all).toEqual([
      "a:start",
      "a:token",
      "b:token",
      "a:tool_call",
      "a:token",
      "b:token",
      "a:done",
      "b:error",
    ]);
    // The throwing handler and the non-JSON event were reported, not thrown.
    expect(listenerErrors).toHaveLength(2);
    expect(connection.connectionId).toBe("c_1");
    expect(connection.lastEventId).toBe("k9");
    expect(gateway.streams[0]!.url.searchParams.get("sessions")).toBe("a,b");
    // The EventSource reconnected by itself with the cursor, got 204, and stopped.
    expect(gateway.streams).toHaveLength(2);
    expect(gateway.streams[1]!.lastEventId).toBe("k9");
    expect(states).toEqual([
      ["connecting", undefined],
      ["live", { connectionId: "c_1", resumed: false }],
      ["reconnecting", undefined],
      ["closed", { status: 204 }],
    ]);
    expect(connection.state).toBe("closed");
  });

  it("fires the @sessions lifecycle handlers and follows `subscribed` changes", async () => {
    const gateway = await fakeGateway();
    let stream: StreamRequest | undefined;
    gateway.onStream = (s) => {
      stream = s;
      openStream(s.res);
      s.res.write(frame("connected", { connectionId: "c_2", sessions: ["@sessions", "a"] }));
    };
    const created: unknown[] = [];
    const ended: unknown[] = [];
    const tokens: string[] = [];
    const { states } = open(gateway, {
      subscription: "sub_1",
      lifecycle: { onCreated: (data) => created.push(data), onEnded: (data) => ended.push(data) },
      handlers: { onToken: (content, sessionId) => tokens.push(`${sessionId}:${content}`) },
    });
    await vi.waitFor(() => expect(states.at(-1)?.[0]).toBe("live"));
    expect(gateway.streams[0]!.url.searchParams.get("subscription")).toBe("sub_1");

    const createdData = {
      id: "n1",
      model: "m",
      metadata: { user: "u" },
      createdAt: "2024-01-01T00:00:00.000Z",
    };
    stream!.res.write(
      frame("@sessions:created", createdData, "k1") +
        frame("a:token", { content: "x" }, "k2") +
        // n1 was announced on a subscription connection: its events are listened for.
        frame("n1:token", { content: "y" }, "k3") +
        frame("@sessions:ended", { id: "n1", status: "done" }, "k4") +
        frame("subscribed", { add: ["d"], remove: ["a"] }) +
        frame("a:token", { content: "dropped" }, "k5") +
        frame("d:token", { content: "z" }, "k6") +
        frame("d:unknown", {}),
    );
    await vi.waitFor(() => expect(tokens).toEqual(["a:x", "n1:y", "d:z"]));
    expect(created).toEqual([createdData]);
    expect(ended).toEqual([{ id: "n1", status: "done" }]);
  });

  it("reports gap and unknown notes", async () => {
    const gateway = await fakeGateway();
    gateway.onStream = (s) => {
      openStream(s.res);
      s.res.write(
        frame("connected", { connectionId: "c_3", sessions: ["a", "b"] }) +
          frame("a:gap", { requested: "1-0", oldest: "5-0" }) +
          frame("b:unknown", {}),
      );
    };
    const notes: unknown[] = [];
    open(gateway, {
      sessions: ["a", "b"],
      handlers: {
        onGap: (data, id) => notes.push([id, data]),
        onUnknown: (id) => notes.push([id, "unknown"]),
      },
    });
    await vi.waitFor(() =>
      expect(notes).toEqual([
        ["a", { requested: "1-0", oldest: "5-0" }],
        ["b", "unknown"],
      ]),
    );
  });

  it("hands a snapshot of compacted history to onSnapshot, then the events that follow it", async () => {
    const gateway = await fakeGateway();
    const snapshot = {
      content: "Hello, ",
      reasoning: "",
      refusal: "",
      tool_calls: [],
      usage: null,
      folded: { start: 1, token: 2 },
    };
    gateway.onStream = (s) => {
      openStream(s.res);
      s.res.write(
        frame("connected", { connectionId: "c_s", sessions: ["a"] }) +
          frame("a:snapshot", snapshot, "cur1") +
          frame("a:token", { content: "world" }, "cur2"),
      );
    };
    let text = "";
    open(gateway, {
      sessions: ["a"],
      handlers: {
        onSnapshot: (data) => {
          text = data.content;
        },
        onToken: (content) => {
          text += content;
        },
      },
    });
    await vi.waitFor(() => expect(text).toBe("Hello, world"));
  });

  it("resumes after a server restart with Last-Event-ID, without re-creating the EventSource", async () => {
    const gateway = await fakeGateway();
    const port = gateway.port;
    gateway.onStream = (s, count) => {
      openStream(s.res);
      if (count === 1) {
        s.res.write(
          frame("connected", { connectionId: "c_4", sessions: ["a"] }) +
            frame("a:token", { content: "one " }, "cur1") +
            frame("a:token", { content: "two " }, "cur2"),
        );
      } else {
        s.res.write(
          frame("connected", { connectionId: "c_5", sessions: ["a"] }) +
            frame("a:token", { content: "three" }, "cur3") +
            frame("a:done", { session_id: "a", total_tokens: 3, finish_reason: "stop" }, "cur4"),
        );
      }
    };
    const tokens: string[] = [];
    const { connection, states } = open(gateway, {
      sessions: ["a"],
      handlers: { onToken: (content) => tokens.push(content) },
    });
    await vi.waitFor(() => expect(tokens).toEqual(["one ", "two "]));

    await gateway.stop();
    await vi.waitFor(() => expect(states.at(-1)?.[0]).toBe("reconnecting"));
    await gateway.start(port);

    await vi.waitFor(() => expect(tokens).toEqual(["one ", "two ", "three"]), { timeout: 5000 });
    const resumed = gateway.streams.at(-1)!;
    expect(resumed.lastEventId).toBe("cur2");
    expect(connection.connectionId).toBe("c_5");
    expect(connection.lastEventId).toBe("cur4");
    expect(states.map(([state]) => state)).toEqual(["connecting", "live", "reconnecting", "live"]);
    expect(states.at(-1)![1]).toEqual({ connectionId: "c_5", resumed: true });
  });

  it("starts from a given cursor with `lastEventId`, and reconnects with the newer one", async () => {
    const gateway = await fakeGateway();
    gateway.onStream = (s, count) => {
      openStream(s.res);
      if (count === 1) {
        s.res.write(
          frame("connected", { connectionId: "c_9", sessions: ["a"] }) +
            frame("a:token", { content: "three " }, "cur3"),
        );
        s.res.end();
        return;
      }
      s.res.write(
        frame("connected", { connectionId: "c_10", sessions: ["a"] }) +
          frame("a:token", { content: "four" }, "cur4"),
      );
    };
    const tokens: string[] = [];
    const { connection, states } = open(gateway, {
      sessions: ["a"],
      lastEventId: "cur2",
      accessToken: "t",
      handlers: { onToken: (content) => tokens.push(content) },
    });
    expect(connection.lastEventId).toBe("cur2");
    await vi.waitFor(() => expect(tokens).toEqual(["three ", "four"]), { timeout: 5000 });
    const [first, second] = gateway.streams;
    expect(first!.url.searchParams.get("lastEventId")).toBe("cur2");
    expect(first!.url.searchParams.get("access_token")).toBe("t");
    expect(first!.lastEventId).toBeUndefined();
    // The EventSource's own reconnect keeps the URL and sends the newer cursor as a header.
    expect(second!.lastEventId).toBe("cur3");
    expect(states.map(([state, info]) => [state, info?.resumed])).toEqual([
      ["connecting", undefined],
      ["live", true],
      ["reconnecting", undefined],
      ["live", true],
    ]);
    expect(connection.lastEventId).toBe("cur4");
  });

  it("sends no lastEventId parameter without the option", async () => {
    const gateway = await fakeGateway();
    gateway.onStream = (s) => {
      openStream(s.res);
      s.res.write(frame("connected", { connectionId: "c_11", sessions: ["a"] }));
    };
    const { connection, states } = open(gateway, { sessions: ["a"], lastEventId: "" });
    await vi.waitFor(() => expect(states.at(-1)?.[0]).toBe("live"));
    expect(gateway.streams[0]!.url.searchParams.has("lastEventId")).toBe(false);
    expect(states.at(-1)![1]).toEqual({ connectionId: "c_11", resumed: false });
    expect(connection.lastEventId).toBeUndefined();
  });

  it("closes on close() and reports it once", async () => {
    const gateway = await fakeGateway();
    gateway.onStream = (s) => {
      openStream(s.res);
      s.res.write(frame("connected", { connectionId: "c_6", sessions: ["a"] }));
    };
    const { connection, states } = open(gateway, { sessions: ["a"] });
    await vi.waitFor(() => expect(states.at(-1)?.[0]).toBe("live"));
    connection.close();
    connection.close();
    expect(states.map(([state]) => state)).toEqual(["connecting", "live", "closed"]);
  });

  it("rejects bad options", () => {
    expect(() => connect({ EventSource, baseUrl: "http://x" })).toThrow(/exactly one/);
    expect(() => connect({ EventSource, baseUrl: "http://x", sessions: ["bad id"] })).toThrow(/session id/);
    expect(() => connect({ EventSource, baseUrl: "http://x", sessions: ["a"], extraTypes: ["Bad"] })).toThrow(
      /event type/,
    );
  });
});

describe("add and remove", () => {
  it("PATCH the subscription with the access token", async () => {
    const gateway = await fakeGateway();
    let stream: StreamRequest | undefined;
    gateway.onStream = (s) => {
      stream = s;
      openStream(s.res);
      s.res.write(frame("connected", { connectionId: "c_7", sessions: [] }));
    };
    gateway.onApi = (request) => ({ status: 200, body: { id: "sub_2", sessions: request.body } });
    const tokens: string[] = [];
    const { connection, states } = open(gateway, {
      subscription: "sub_2",
      accessToken: "t0ken",
      handlers: { onToken: (content, sessionId) => tokens.push(`${sessionId}:${content}`) },
    });
    await vi.waitFor(() => expect(states.at(-1)?.[0]).toBe("live"));
    expect(gateway.streams[0]!.url.searchParams.get("access_token")).toBe("t0ken");

    await connection.add(["x", "y"]);
    await connection.remove(["x"]);
    expect(gateway.api).toEqual([
      {
        method: "PATCH",
        path: "/api/v1/subscriptions/sub_2",
        authorization: "Bearer t0ken",
        body: { add: ["x", "y"] },
      },
      {
        method: "PATCH",
        path: "/api/v1/subscriptions/sub_2",
        authorization: "Bearer t0ken",
        body: { remove: ["x"] },
      },
    ]);
    // y was added (listened for), x was removed (no longer listened for).
    stream!.res.write(
      frame("x:token", { content: "gone" }, "k1") + frame("y:token", { content: "here" }, "k2"),
    );
    await vi.waitFor(() => expect(tokens).toEqual(["y:here"]));
  });

  it("surface the API's error code, and refuse a sessions= connection", async () => {
    const gateway = await fakeGateway();
    gateway.onStream = (s) => {
      openStream(s.res);
      s.res.write(frame("connected", { connectionId: "c_8", sessions: ["a"] }));
    };
    gateway.onApi = () => ({ status: 404, body: error("not_found", "no subscription sub_x") });
    const viaSubscription = open(gateway, { subscription: "sub_x" }).connection;
    const rejection = await viaSubscription.add(["a"]).catch((e: unknown) => e);
    expect(rejection).toBeInstanceOf(GatewayError);
    expect(rejection).toMatchObject({ status: 404, code: "not_found", message: "no subscription sub_x" });

    const viaSessions = open(gateway, { sessions: ["a"] }).connection;
    await expect(viaSessions.add(["b"])).rejects.toThrow(/subscription connection/);
    await expect(viaSessions.add(["bad id"])).rejects.toThrow(/session id/);
  });
});

describe("API calls", () => {
  it("create subscriptions, start and cancel sessions, and throw GatewayError on non-2xx", async () => {
    const gateway = await fakeGateway();
    gateway.onApi = (request) => {
      if (request.path === "/api/v1/subscriptions") return { status: 201, body: { id: "sub_3" } };
      if (request.path === "/api/v1/sessions") {
        return {
          status: 201,
          body: { id: "s1", status: "running", streamUrl: "/api/v1/sessions/s1/stream" },
        };
      }
      if (request.path === "/api/v1/sessions/s1/cancel")
        return { status: 202, body: { id: "s1", status: "running" } };
      if (request.path === "/api/v1/sessions/gone/cancel")
        return { status: 409, body: error("conflict", "ended") };
      return { status: 502, body: undefined };
    };
    const options = { baseUrl: gateway.baseUrl, accessToken: "k" };

    await expect(createSubscription(["a", "@sessions"], options)).resolves.toBe("sub_3");
    await expect(
      startSession({ message: "hi", id: "s1", metadata: { user: "u" } }, options),
    ).resolves.toEqual({
      id: "s1",
      status: "running",
      streamUrl: "/api/v1/sessions/s1/stream",
    });
    await expect(cancelSession("s1", options)).resolves.toEqual({ id: "s1", status: "running" });
    await expect(cancelSession("gone", options)).rejects.toMatchObject({ status: 409, code: "conflict" });
    await expect(cancelSession("other", { baseUrl: gateway.baseUrl })).rejects.toMatchObject({
      status: 502,
      code: "http_502",
    });

    expect(gateway.api.map((r) => [r.method, r.path, r.authorization, r.body])).toEqual([
      ["POST", "/api/v1/subscriptions", "Bearer k", { sessions: ["a", "@sessions"] }],
      ["POST", "/api/v1/sessions", "Bearer k", { message: "hi", id: "s1", metadata: { user: "u" } }],
      ["POST", "/api/v1/sessions/s1/cancel", "Bearer k", undefined],
      ["POST", "/api/v1/sessions/gone/cancel", "Bearer k", undefined],
      ["POST", "/api/v1/sessions/other/cancel", undefined, undefined],
    ]);
  });
});
