/** The memory backend's store beyond the contract: expiry on an injected clock. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StreamStore } from "../../src/store/types.js";
import { memoryBackend, type TestBackend } from "./backends.js";
import { newSession, uniqueId } from "./stream-store.contract.js";

describe("memory store expiry (injected clock)", () => {
  let now = 1_700_000_000_000;
  let handle: TestBackend;
  let store: StreamStore;
  beforeAll(async () => {
    handle = await memoryBackend.build({
      retention: { endedSessionTtlSeconds: 60, idleSessionTtlSeconds: 3_600 },
      clock: () => now,
    });
    store = handle.backend.store;
  });
  afterAll(() => handle?.close());

  it("an ended session expires ENDED_SESSION_TTL_SECONDS after its terminal event", async () => {
    const id = uniqueId();
    await store.createSession(newSession(id, { createdAt: now }));
    await store.append(id, [{ type: "token", data: { content: "a" } }]);
    now += 1_000;
    await store.append(id, [
      { type: "done", data: { session_id: id, total_tokens: 1, finish_reason: "stop" } },
    ]);
    now += 59_000;
    expect((await store.getSession(id))?.status).toBe("done");
    expect((await store.read(id, null, 10)).events).toHaveLength(2);
    now += 1_001;
    expect(await store.getSession(id)).toBeNull();
    expect(await store.read(id, null, 10)).toEqual({ events: [], gap: null, createdAt: null });
  });

  it("a running session expires after IDLE_SESSION_TTL_SECONDS without appends, and each append renews it", async () => {
    const id = uniqueId();
    await store.createSession(newSession(id, { createdAt: now }));
    now += 3_000_000;
    await store.append(id, [{ type: "token", data: { content: "a" } }]);
    now += 3_000_000;
    expect((await store.getSession(id))?.status).toBe("running");
    now += 600_001;
    expect(await store.getSession(id)).toBeNull();
  });

  it("positions follow the injected clock: <ms>-<seq>, seq growing within one millisecond", async () => {
    const id = uniqueId();
    await store.createSession(newSession(id, { createdAt: now }));
    const outcome = await store.append(id, [
      { type: "token", data: { content: "a" } },
      { type: "token", data: { content: "b" } },
    ]);
    expect(outcome).toMatchObject({ kind: "appended", ids: [`${now}-0`, `${now}-1`] });
  });
});
