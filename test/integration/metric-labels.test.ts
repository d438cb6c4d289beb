/**
 * Metric labels never take values from callers: a producer appending 1,000 event types of its own
 * invention leaves `sse_events_appended_total` with the contract's types and one `other`, not 1,000
 * new series. Also the rule itself (eventTypeLabel), in the one place it lives.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventTypeLabel } from "../../src/metrics.js";
import { postJson, startTestGateway, type TestGateway } from "../helpers/index.js";

const CONTRACT_TYPES = [
  "start",
  "token",
  "usage",
  "done",
  "error",
  "cancelled",
  "reasoning",
  "refusal",
  "tool_call_delta",
  "tool_call",
  "snapshot",
  "created",
  "ended",
];
const INVENTED_TYPES = 1_000;
const TYPES_PER_SESSION = 100;

/** Every sample line of one metric in a Prometheus text scrape. */
function samples(scrape: string, metric: string): string[] {
  return scrape.split("\n").filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `));
}

describe("eventTypeLabel", () => {
  it("keeps the contract's types and counts every other one as `other`", () => {
    for (const type of CONTRACT_TYPES) expect(eventTypeLabel(type)).toBe(type);
    for (const type of ["note", "a:token", "token2", "Token", "", "other", "__proto__", "constructor"]) {
      expect(eventTypeLabel(type)).toBe("other");
    }
  });
});

describe("sse_events_appended_total under invented event types", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it("stays bounded after 1,000 distinct types are appended", async () => {
    const session = `labels-${randomBytes(4).toString("hex")}`;
    for (let first = 0; first < INVENTED_TYPES; first += TYPES_PER_SESSION) {
      const events = Array.from({ length: TYPES_PER_SESSION }, (_, offset) => ({
        type: `invented-${first + offset}`,
        data: { n: first + offset },
      }));
      const reply = await postJson(`${gw.url}/api/v1/sessions/${session}-${first}/events`, { events });
      expect(reply.status, reply.text).toBe(202);
    }
    const known = await postJson(`${gw.url}/api/v1/sessions/${session}-known/events`, {
      events: [
        { type: "token", data: { content: "a" } },
        { type: "token", data: { content: "b" } },
      ],
    });
    expect(known.status, known.text).toBe(202);

    const scrape = await (await fetch(`${gw.url}/metrics`)).text();
    const series = samples(scrape, "sse_events_appended_total");
    expect(series.length).toBeLessThanOrEqual(CONTRACT_TYPES.length + 1);
    expect(series).toContain(`sse_events_appended_total{type="other"} ${INVENTED_TYPES}`);
    expect(series).toContain('sse_events_appended_total{type="token"} 2');
    expect(scrape).not.toContain("invented-");
  });
});
