/**
 * The wire form of an append notice, shared by the Lua append script and the in-memory store:
 * line 1 is the previous position and the session's creation stamp (`prev \t createdAt`: which
 * incarnation of the id the batch belongs to), then one line per event, `id \t type \t data`. Event
 * data is JSON text, which never holds a raw newline or tab, so the split is unambiguous.
 */

import { detached } from "../detached.js";
import type { KeyScheme } from "./keys.js";
import type { PubSub } from "./pubsub.js";
import type { AppendNotice, AppendNotifier, NotificationListener, StoredEvent } from "./types.js";

export function formatNotice(prevId: string, events: readonly StoredEvent[], createdAt: number): string {
  let text = `${prevId}\t${createdAt}`;
  for (const event of events) text += `\n${event.id}\t${event.type}\t${event.data}`;
  return text;
}

export function parseNotice(sessionId: string, text: string): AppendNotice | null {
  const lines = text.split("\n");
  const head = lines[0] ?? "";
  const tab = head.indexOf("\t");
  const prevId = tab < 0 ? head : head.slice(0, tab);
  const stamp = tab < 0 ? "" : head.slice(tab + 1);
  const createdAt = stamp === "" || !Number.isFinite(Number(stamp)) ? null : Number(stamp);
  const events: StoredEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const firstTab = line.indexOf("\t");
    const secondTab = line.indexOf("\t", firstTab + 1);
    if (firstTab < 0 || secondTab < 0) return null;
    events.push({
      id: detached(line.slice(0, firstTab)),
      type: line.slice(firstTab + 1, secondTab),
      data: line.slice(secondTab + 1),
    });
  }
  return events.length > 0 ? { sessionId, prevId, events, createdAt } : null;
}

/** Append notices over pub/sub: one channel per watched session, all on the instance's one link. */
export function createNotifier(pubsub: PubSub, keys: KeyScheme): AppendNotifier {
  let listener: NotificationListener | null = null;
  const watched = new Map<string, Watch>();
  pubsub.onReconnect(() => listener?.onResync());

  return {
    setListener(next) {
      listener = next;
    },
    watch(sessionId) {
      // Every reader of a session joins through here: once watched, a call allocates nothing (the
      // same promise serves every caller, while the SUBSCRIBE is in flight and after).
      const known = watched.get(sessionId);
      if (known) return known.subscribed;
      const handler = (message: string) => {
        const notice = parseNotice(sessionId, message);
        if (notice) listener?.onAppend(notice);
      };
      const watch: Watch = { handler, subscribed: pubsub.subscribe(keys.notices(sessionId), handler) };
      watched.set(sessionId, watch);
      // Refused: forgotten, so that the next call asks again.
      watch.subscribed.catch(() => {
        if (watched.get(sessionId) === watch) watched.delete(sessionId);
      });
      return watch.subscribed;
    },
    unwatch(sessionId) {
      const watch = watched.get(sessionId);
      if (!watch) return;
      watched.delete(sessionId);
      pubsub.unsubscribe(keys.notices(sessionId), watch.handler);
    },
  };
}

interface Watch {
  handler: (message: string) => void;
  subscribed: Promise<void>;
}
