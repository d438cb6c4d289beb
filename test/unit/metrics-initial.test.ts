/**
 * Labelled series a rate() or an alert reads exist at 0 from the start: the first increase after a
 * restart is then a change Prometheus sees, not a series appearing.
 */
import { describe, expect, it } from "vitest";
import { createMetrics } from "../../src/metrics.js";

describe("metrics at start", () => {
  it("exports gaps by reason and WAITs by outcome at 0 before anything happened", async () => {
    const text = await createMetrics({ defaultMetrics: false }).registry.metrics();
    for (const reason of ["trimmed", "expired"]) {
      expect(text).toContain(`sse_gaps_total{reason="${reason}"} 0`);
    }
    for (const outcome of ["confirmed", "short"]) {
      expect(text).toContain(`sse_redis_wait_seconds_count{outcome="${outcome}"} 0`);
    }
  });
});
