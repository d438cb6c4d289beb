/** A narrow publish/subscribe link: the notifier, cancel and subscription-set changes all ride on it. */
export type MessageHandler = (message: string) => void;

export interface PubSub {
  /** Resolves once messages on the channel are being received. */
  subscribe(channel: string, handler: MessageHandler): Promise<void>;
  unsubscribe(channel: string, handler: MessageHandler): void;
  publish(channel: string, message: string): Promise<void>;
  /** Called after the link was lost and came back: messages in between may be lost. */
  onReconnect(callback: () => void): void;
  close(): Promise<void>;
}

/** Routes a channel's messages to its handlers; shared by the Redis and in-memory links. */
export class ChannelRouter {
  private readonly handlers = new Map<string, Set<MessageHandler>>();

  /** Returns true when this is the channel's first handler (the caller must subscribe upstream). */
  add(channel: string, handler: MessageHandler): boolean {
    let set = this.handlers.get(channel);
    const first = set === undefined;
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    set.add(handler);
    return first;
  }

  /** Returns true when the channel has no handler left (the caller may unsubscribe upstream). */
  remove(channel: string, handler: MessageHandler): boolean {
    const set = this.handlers.get(channel);
    if (!set) return false;
    set.delete(handler);
    if (set.size > 0) return false;
    this.handlers.delete(channel);
    return true;
  }

  has(channel: string): boolean {
    return this.handlers.has(channel);
  }

  /** Every channel with a handler. */
  channels(): string[] {
    return [...this.handlers.keys()];
  }

  /**
   * Calls the handlers subscribed when the message arrived that are still subscribed when their turn
   * comes. Not a plain loop over the set: its iterator would also visit a handler that another one
   * subscribes meanwhile, which would then hear a message published before it subscribed.
   */
  dispatch(channel: string, message: string): void {
    const set = this.handlers.get(channel);
    if (!set) return;
    if (set.size === 1) {
      // The common case, without copying the set.
      const only: MessageHandler | undefined = set.values().next().value;
      only?.(message);
      return;
    }
    for (const handler of Array.from(set)) if (set.has(handler)) handler(message);
  }
}

/** In-process pub/sub for the embedded single-instance mode. */
export function createMemoryPubSub(): PubSub {
  const router = new ChannelRouter();
  return {
    async subscribe(channel, handler) {
      router.add(channel, handler);
    },
    unsubscribe(channel, handler) {
      router.remove(channel, handler);
    },
    async publish(channel, message) {
      // Delivered on a later turn, as Redis would, so publishers never re-enter subscribers.
      queueMicrotask(() => router.dispatch(channel, message));
    },
    onReconnect() {},
    async close() {},
  };
}
