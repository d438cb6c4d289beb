/** Which requests the stream front handler takes: exactly the stream routes' plain form; the rest is Express's. */
import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { matchStreamRoute } from "../../src/http/stream-front.js";

const requestOf = (method: string, url: string, headers: Record<string, string> = {}) =>
  ({ method, url, headers }) as unknown as IncomingMessage;

describe("matchStreamRoute", () => {
  it("takes GET and HEAD of both stream routes, with their query", () => {
    expect(matchStreamRoute(requestOf("GET", "/api/v1/stream?sessions=a,b"))).toEqual({
      route: { kind: "multiplexed" },
      query: "sessions=a,b",
    });
    expect(matchStreamRoute(requestOf("HEAD", "/api/v1/stream"))).toEqual({
      route: { kind: "multiplexed" },
      query: "",
    });
    expect(matchStreamRoute(requestOf("GET", "/api/v1/sessions/Ab_9-x/stream?lastEventId=1-0"))).toEqual({
      route: { kind: "session", id: "Ab_9-x" },
      query: "lastEventId=1-0",
    });
  });

  it("leaves everything else to Express", () => {
    for (const [method, url] of [
      ["POST", "/api/v1/stream?sessions=a"],
      ["OPTIONS", "/api/v1/stream?sessions=a"],
      ["GET", "/api/v1/stream/?sessions=a"],
      ["GET", "/API/v1/stream?sessions=a"],
      ["GET", "/api/v1/Stream?sessions=a"],
      ["GET", "/api/v1/sessions/a%62/stream"],
      ["GET", "/api/v1/sessions/a/stream/"],
      ["GET", `/api/v1/sessions/${"x".repeat(65)}/stream`],
      ["GET", "/api/v1/sessions//stream"],
      ["GET", "/api/v1/sessions/a/b/stream"],
      ["GET", "/api/v1/sessions/a"],
      ["GET", "/api/v1/stream?sessions=a#x"],
      ["GET", "http://host/api/v1/stream?sessions=a"],
      ["GET", "//api/v1/stream"],
    ] as const) {
      expect(matchStreamRoute(requestOf(method, url)), `${method} ${url}`).toBeNull();
    }
  });

  it("leaves a request with a body (even an empty one) to Express's JSON parser", () => {
    expect(matchStreamRoute(requestOf("GET", "/api/v1/stream", { "content-length": "0" }))).toBeNull();
    expect(
      matchStreamRoute(requestOf("GET", "/api/v1/stream", { "transfer-encoding": "chunked" })),
    ).toBeNull();
  });
});
