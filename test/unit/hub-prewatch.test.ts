/**
 * The hub's prewatch: a new run's stream subscribes to its session's notices while the session is
 * created, and its reader then joins without a round trip. The subscription outlives the call only
 * when a reader holds it.
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import { Hub } from "../../src/hub/hub.js";
import type { Reader } from "../../src/hub/reader.js";
import { createMetrics } from "../../src/metrics.js";
import type { AppendNotifier } from "../../src/store/types.js";

function setup() {
  const calls: string[] = [];
  let subscribed = 0;
  const notifier: AppendNotifier = {
    setListener() {},
    watch: async (id) => {
      calls.push(`watch ${id}`);
      subscribed++;
    },
    unwatch: (id) => {
      calls.push(`unwatch ${id}`);
      subscribed--;
    },
  };
  const hub = new Hub(notifier, createMetrics({ defaultMetrics: false }), pino({ level: "silent" }));
  return { hub, calls, subscribed: () => subscribed };
}

const reader = (sessionId: string): Reader => ({ sessionId, push: () => true, resync() {} });

describe("Hub.prewatch", () => {
  it("subscribes at once, and drops the subscription when no reader joined", () => {
    const { hub, calls, subscribed } = setup();
    const release = hub.prewatch("s1");
    expect(calls).toEqual(["watch s1"]);
    release();
    release();
    expect(calls).toEqual(["watch s1", "unwatch s1"]);
    expect(subscribed()).toBe(0);
  });

  it("leaves the subscription to a reader that joined; the reader's leaving drops it", async () => {
    const { hub, calls } = setup();
    const release = hub.prewatch("s1");
    const joined = reader("s1");
    const joining = hub.join(joined);
    release();
    await joining;
    expect(calls.filter((call) => call.startsWith("unwatch"))).toEqual([]);
    hub.leave(joined);
    expect(calls.at(-1)).toBe("unwatch s1");
  });
});
