/** The hot routes' routing rule: which paths are theirs (any method: a wrong one is their 405), with their query. */
import { describe, expect, it } from "vitest";
import { matchHotRoute } from "../../src/http/front.js";

describe("matchHotRoute", () => {
  it("names the four hot routes, with their query", () => {
    expect(matchHotRoute("/api/v1/stream?sessions=a,b")).toEqual({
      route: { kind: "multiplexed" },
      query: "sessions=a,b",
    });
    expect(matchHotRoute("/api/v1/stream")).toEqual({ route: { kind: "multiplexed" }, query: "" });
    expect(matchHotRoute("/api/v1/sessions/Ab_9-x/stream?lastEventId=1-0")).toEqual({
      route: { kind: "session-stream", id: "Ab_9-x" },
      query: "lastEventId=1-0",
    });
    expect(matchHotRoute("/api/v1/sessions/Ab_9-x/events")).toEqual({
      route: { kind: "append", id: "Ab_9-x" },
      query: "",
    });
    expect(matchHotRoute("/api/v1/agent/stream")).toEqual({ route: { kind: "agent" }, query: "" });
  });

  it("decodes a percent-encoded id (invalid encoding is a null id: the route answers invalid_path)", () => {
    expect(matchHotRoute("/api/v1/sessions/a%62/stream")?.route).toEqual({
      kind: "session-stream",
      id: "ab",
    });
    expect(matchHotRoute("/api/v1/sessions/%zz/events")?.route).toEqual({ kind: "append", id: null });
  });

  it("ends the path at a fragment, as a URL parser does", () => {
    expect(matchHotRoute("/api/v1/stream#x?sessions=a")).toEqual({
      route: { kind: "multiplexed" },
      query: "",
    });
    expect(matchHotRoute("/api/v1/stream?sessions=a#x")).toEqual({
      route: { kind: "multiplexed" },
      query: "sessions=a#x",
    });
  });

  it("leaves every other path to Express", () => {
    for (const url of [
      "/api/v1/stream/?sessions=a",
      "/API/v1/stream?sessions=a",
      "/api/v1/Stream?sessions=a",
      "/api/v1/sessions/a/stream/",
      "/api/v1/sessions//stream",
      "/api/v1/sessions/a/b/stream",
      "/api/v1/sessions/a",
      "/api/v1/sessions",
      "/api/v1/sessions/a/cancel",
      "/api/v1/subscriptions",
      "http://host/api/v1/stream?sessions=a",
      "//api/v1/stream",
      "/",
    ]) {
      expect(matchHotRoute(url), url).toBeNull();
    }
  });
});
