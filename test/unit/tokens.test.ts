import { describe, expect, it } from "vitest";
import { mergeTokenRuns } from "../../src/mux/tokens.js";
import type { StoredEvent } from "../../src/store/types.js";

let seq = 0;
const event = (type: string, data: unknown): StoredEvent => ({
  id: `1700000000000-${seq++}`,
  type,
  data: JSON.stringify(data),
});

describe("mergeTokenRuns", () => {
  it("folds runs of {content}-only tokens into one frame at the last token's position", () => {
    const events = [
      event("start", { model: "m" }),
      event("token", { content: "Hel" }),
      event("token", { content: 'lo "q"\n' }),
      event("token", { content: "!" }),
      event("usage", { total_tokens: 3 }),
      event("token", { content: "x" }),
    ];
    const { events: out, merged } = mergeTokenRuns(events);
    expect(merged).toBe(2);
    expect(out.map((e) => [e.id, e.type, e.data])).toEqual([
      [events[0]!.id, "start", events[0]!.data],
      [events[3]!.id, "token", JSON.stringify({ content: 'Hello "q"\n!' })],
      [events[4]!.id, "usage", events[4]!.data],
      [events[5]!.id, "token", events[5]!.data],
    ]);
  });

  it("never folds a token that carries more than content, whatever its key order", () => {
    const events = [
      event("token", { content: "a" }),
      event("token", { content: "b", seq: 2 }),
      event("token", { seq: 3, content: "c" }),
      event("token", { content: "d", note: "e" }),
      event("token", { content: "f" }),
    ];
    const { events: out, merged } = mergeTokenRuns(events);
    expect(merged).toBe(0);
    expect(out).toEqual(events);
  });

  it("folds reasoning like tokens, but never a token into reasoning or the reverse", () => {
    const events = [
      event("reasoning", { content: "Let " }),
      event("reasoning", { content: "me think" }),
      event("token", { content: "The " }),
      event("token", { content: "answer" }),
      event("reasoning", { content: "again" }),
    ];
    const { events: out, merged } = mergeTokenRuns(events);
    expect(merged).toBe(2);
    expect(out.map((e) => [e.id, e.type, e.data])).toEqual([
      [events[1]!.id, "reasoning", JSON.stringify({ content: "Let me think" })],
      [events[3]!.id, "token", JSON.stringify({ content: "The answer" })],
      [events[4]!.id, "reasoning", events[4]!.data],
    ]);
  });

  it("folds one call's deltas into its first (keeping id and name), never deltas of two calls", () => {
    const events = [
      event("tool_call_delta", { index: 0, id: "call_1", name: "f", arguments: "" }),
      event("tool_call_delta", { index: 0, arguments: '{"a"' }),
      event("tool_call_delta", { index: 0, arguments: ":1}" }),
      event("tool_call", { index: 0, id: "call_1", name: "f", arguments: '{"a":1}' }),
      event("tool_call_delta", { index: 1, id: "call_2", name: "g", arguments: "{" }),
      event("tool_call_delta", { index: 1, arguments: "}" }),
      event("tool_call_delta", { index: 0, arguments: " " }),
      event("tool_call_delta", { index: 1, arguments: "x" }),
    ];
    const { events: out, merged } = mergeTokenRuns(events);
    expect(merged).toBe(3);
    expect(out.map((e) => [e.id, e.type, e.data])).toEqual([
      [
        events[2]!.id,
        "tool_call_delta",
        JSON.stringify({ index: 0, id: "call_1", name: "f", arguments: '{"a":1}' }),
      ],
      [events[3]!.id, "tool_call", events[3]!.data],
      [
        events[5]!.id,
        "tool_call_delta",
        JSON.stringify({ index: 1, id: "call_2", name: "g", arguments: "{}" }),
      ],
      [events[6]!.id, "tool_call_delta", events[6]!.data],
      [events[7]!.id, "tool_call_delta", events[7]!.data],
    ]);
  });

  it("never folds a delta that carries more, or a second delta that names its call again", () => {
    const events = [
      event("tool_call_delta", { index: 0, id: "call_1", arguments: "a" }),
      event("tool_call_delta", { index: 0, id: "call_1", arguments: "b" }),
      event("tool_call_delta", { index: 0, arguments: "c", note: 1 }),
      event("tool_call_delta", { arguments: "d", index: 0 }),
      event("tool_call_delta", { index: "0", arguments: "e" }),
      event("reasoning", { content: "r", by: "x" }),
    ];
    const { events: out, merged } = mergeTokenRuns(events);
    expect(merged).toBe(0);
    expect(out).toEqual(events);
  });
});
