/**
 * A chat's active run, kept in Redis so that any instance can resume it: the chat is a subscription
 * set (subscriptions.ts: owner, expiry, kept in the backend) named `chat_<hash of the chat id>`,
 * holding its latest run. The latest run is the member with the highest index (a set never reuses
 * one), so two runs started at once for one chat resolve the same way everywhere; older members are
 * removed as new ones come. The set can be followed like any other (`/api/v1/stream?subscription=`),
 * which a dashboard may use to watch a chat's runs.
 */
import { createHash } from "node:crypto";
import { mayUseSubscription } from "../auth/policy.js";
import type { Principal } from "../auth/principal.js";
import { authError } from "../auth/verifier.js";
import type { SubscriptionStore } from "../mux/subscriptions.js";

export function chatSetId(chatId: string): string {
  return `chat_${createHash("sha256").update(chatId).digest("base64url").slice(0, 32)}`;
}

function latest(members: Map<string, number>): string | null {
  let best: string | null = null;
  let bestIndex = -1;
  for (const [id, index] of members) {
    if (index > bestIndex) {
      best = id;
      bestIndex = index;
    }
  }
  return best;
}

export interface ChatRuns {
  /** Refuses (403) a chat that another subject's runs belong to. */
  assertMayUse(principal: Principal, chatId: string): Promise<void>;
  /**
   * Records the chat's newest run: resolved once it is the chat's active run. `pruned` settles once the
   * chat's older runs are dropped from its set (housekeeping: the newest member is the active run
   * whatever else the set holds, so nothing waits for it).
   */
  setActive(chatId: string, sessionId: string, owner: string | null): Promise<{ pruned: Promise<void> }>;
  /** The chat's newest run, or null (never started, or expired). */
  active(chatId: string): Promise<string | null>;
}

export function createChatRuns(subscriptions: SubscriptionStore): ChatRuns {
  return {
    async assertMayUse(principal, chatId) {
      const id = chatSetId(chatId);
      // Both reads at once: this is on the way to the run's first token.
      const [members, owner] = await Promise.all([subscriptions.get(id), subscriptions.owner(id)]);
      if (!members) return;
      if (!mayUseSubscription(principal, owner)) {
        throw authError("forbidden", "this chat belongs to another subject");
      }
    },
    async setActive(chatId, sessionId, owner) {
      const id = chatSetId(chatId);
      const outcome = await subscriptions.create(id, [sessionId], owner);
      if (outcome.kind !== "ok" || outcome.sessions.length < 2) return { pruned: Promise.resolve() };
      // Members older than this run go, never a newer one another request added meanwhile.
      const mine = outcome.change.add.find((added) => added.id === sessionId)?.index;
      const prune = async () => {
        const members = mine === undefined ? null : await subscriptions.get(id);
        if (!members || mine === undefined) return;
        const older = [...members].filter(([, index]) => index < mine).map(([member]) => member);
        if (older.length > 0) await subscriptions.patch(id, [], older);
      };
      return { pruned: prune() };
    },
    async active(chatId) {
      const members = await subscriptions.get(chatSetId(chatId));
      return members ? latest(members) : null;
    },
  };
}
