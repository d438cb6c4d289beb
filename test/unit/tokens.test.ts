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
});
