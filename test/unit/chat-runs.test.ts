/**
 * The AI SDK door's record of each chat's runs (doors/chat-runs.ts): the newest run is the active one
 * as soon as `setActive` resolves; the chat's older runs leave its set afterwards (`pruned`); a chat
 * is its first subject's.
 */
import { describe, expect, it } from "vitest";
import type { Principal } from "../../src/auth/principal.js";
import { createMemoryBackend } from "../../src/backend/memory.js";
import { chatSetId, createChatRuns } from "../../src/doors/chat-runs.js";

function chatRuns() {
  const backend = createMemoryBackend({
    keyPrefix: "t:",
    retention: {
      maxEventsPerSession: 1000,
      lifecycleMaxEvents: 1000,
      endedSessionTtlSeconds: 3_600,
      idleSessionTtlSeconds: 3_600,
      requestRecordTtlSeconds: 600,
    },
    subscriptionLimits: { maxSessions: 100, ttlSeconds: 3_600 },
  });
  return { chats: createChatRuns(backend.subscriptions), subscriptions: backend.subscriptions };
}

const subject = (sub: string): Principal => ({
  subject: sub,
  scopes: new Set(["run", "subscribe"]),
  sessionPatterns: null,
  expiresAtMs: null,
  open: false,
});

describe("a chat's runs", () => {
  it("the newest run is active once setActive resolves; older runs leave the set once pruned", async () => {
    const { chats, subscriptions } = chatRuns();
    expect(await chats.active("c1")).toBeNull();
    await (await chats.setActive("c1", "run-1", "ann")).pruned;
    const second = await chats.setActive("c1", "run-2", "ann");
    expect(await chats.active("c1")).toBe("run-2");
    await second.pruned;
    const third = await chats.setActive("c1", "run-3", "ann");
    expect(await chats.active("c1")).toBe("run-3");
    await third.pruned;
    const members = await subscriptions.get(chatSetId("c1"));
    expect(members === null ? null : [...members.keys()]).toEqual(["run-3"]);
  });

  it("a chat is its first subject's: another subject is refused, the owner and a new chat are not", async () => {
    const { chats } = chatRuns();
    await chats.assertMayUse(subject("bob"), "new-chat");
    await (await chats.setActive("c2", "run-1", "ann")).pruned;
    await chats.assertMayUse(subject("ann"), "c2");
    await expect(chats.assertMayUse(subject("bob"), "c2")).rejects.toMatchObject({ status: 403 });
  });
});
