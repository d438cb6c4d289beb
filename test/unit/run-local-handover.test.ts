/**
 * A run's events are stored without waiting for its caller's reader; what the store acknowledged before
 * that reader joined is handed over locally once it has, in order, and nothing after it waits.
 */
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { RunManager } from "../../src/agent/run-manager.js";
import type { ModelProvider } from "../../src/agent/types.js";
import { createMetrics } from "../../src/metrics.js";
import { createMemoryPubSub } from "../../src/store/pubsub.js";
import type { StoredEvent } from "../../src/store/types.js";
import { testMemoryStore } from "../helpers/memory-store.js";

interface HandedOver {
  prevId: string;
  ids: string[];
}

function tokensModel(count: number): ModelProvider {
  return {
    name: "openai",
    async *stream() {
      for (let i = 0; i < count; i++) yield { kind: "token", content: `t${i} ` };
      yield { kind: "finish", reason: "stop" };
    },
  };
}

function runManager(handedOver: HandedOver[]) {
  const store = testMemoryStore();
  const model = tokensModel(5);
  const runs = new RunManager(
    {
      store,
      pubsub: createMemoryPubSub(),
      controlChannel: "control",
      providers: { openai: model, simulated: model },
      metrics: createMetrics({ defaultMetrics: false }),
      logger: pino({ level: "silent" }),
      onLocalAppend: (_sessionId, prevId, events: () => StoredEvent[]) => {
        handedOver.push({ prevId, ids: events().map((event) => event.id) });
      },
    },
    {
      instanceId: "i1",
      defaultModel: "gpt-test",
      leaseMs: 10_000,
      cancelGraceMs: 1_000,
      runBufferMaxEvents: 1_000,
    },
  );
  return { runs, store };
}

describe("a run's local hand-over", () => {
  it("stores the whole run before its reader joins, then hands every batch over in order", async () => {
    const handedOver: HandedOver[] = [];
    const { runs, store } = runManager(handedOver);
    await runs.init();
    let readerJoined: () => void = () => {};
    const readerReady = new Promise<void>((resolve) => {
      readerJoined = resolve;
    });
    const started = await runs.start({
      messages: [{ role: "user", content: "go" }],
      freshId: true,
      readerReady,
    });
    if (started.kind !== "started") throw new Error("the run did not start");
    expect(await runs.waitForRuns(5_000)).toBe(true);

    const { events } = await store.read(started.session.id, null, 100);
    expect(events.at(-1)?.type).toBe("done");
    expect(handedOver).toEqual([]);

    readerJoined();
    await readerReady;
    await Promise.resolve();
    // Each batch follows the one before it, from the session's start, and together they are the run.
    expect(handedOver.flatMap((batch) => batch.ids)).toEqual(events.map((event) => event.id));
    handedOver.forEach((batch, i) => {
      if (i > 0) expect(batch.prevId).toBe(handedOver[i - 1]!.ids.at(-1));
    });
    await runs.stop();
  });

  it("hands batches over as they are acknowledged once the reader has joined", async () => {
    const handedOver: HandedOver[] = [];
    const { runs, store } = runManager(handedOver);
    await runs.init();
    const started = await runs.start({
      messages: [{ role: "user", content: "go" }],
      freshId: true,
      readerReady: Promise.resolve(),
    });
    if (started.kind !== "started") throw new Error("the run did not start");
    expect(await runs.waitForRuns(5_000)).toBe(true);
    const { events } = await store.read(started.session.id, null, 100);
    expect(handedOver.flatMap((batch) => batch.ids)).toEqual(events.map((event) => event.id));
    await runs.stop();
  });
});
