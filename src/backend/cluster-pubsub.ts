/**
 * Pub/sub on a Redis Cluster over sharded channels: a channel lives on the shard that owns its slot
 * (a session's notice channel shares the session's hash tag), `SPUBLISH` reaches that shard only, and
 * an instance holds ONE subscriber connection per primary, whatever the number of channels, clients
 * or sessions. Channels are placed by the Cluster client's slot map and moved when it changes (a
 * failover, a resharding); after a move or a lost connection the `onReconnect` callbacks run, as on
 * one Redis, because what was published meanwhile is gone (readers then catch up from the store).
 *
 * Why not ioredis's own `shardedSubscribers`: it gives no signal when a shard's subscription was
 * lost and restored, and that signal is what makes a resumed stream exact.
 */
import type { Cluster, Redis } from "ioredis";
import { ChannelRouter, type PubSub } from "../store/pubsub.js";
import { keySlot } from "./slots.js";
import type { ConnectionState } from "./types.js";

/** How often slots are asked again while a shard's subscriber is down (ioredis's own period is 5 s). */
const DOWN_REFRESH_MS = 500;
/** A subscribe that meets a moved slot or a closed connection asks again, this many times. */
const PLACE_ATTEMPTS = 20;
const PLACE_RETRY_MS = 250;

export interface ShardedPubSubOptions {
  /** Publishes (`SPUBLISH` is routed by its channel's slot), and its slot map places the channels. */
  cluster: Cluster;
  /** Opens a subscriber connection to one primary (lazyConnect; this module connects and closes it). */
  openSubscriber(host: string, port: number): Redis;
  /** Told when channels moved to another shard (`moved`) or a shard's subscriber came back (`reconnected`). */
  onResubscribe?(reason: "moved" | "reconnected", address: string, channels: number): void;
  /** Told each time a shard's subscriber connection is lost (false) or ready (true). */
  onShardState?(address: string, ready: boolean): void;
}

export interface ShardedPubSub extends PubSub {
  /** One subscriber per primary: its address (`host:port`) and state. */
  subscribers(): Array<{ address: string } & Omit<ConnectionState, "name">>;
}

interface Shard {
  address: string;
  redis: Redis;
  channels: Set<string>;
  wasReady: boolean;
  /**
   * Settles when the shard is dropped (its node serves no slot now). A command queued on its
   * connection while it reconnected would never settle (ioredis leaves the offline queue of a
   * connection disconnected while reconnecting as it is): a subscribe waiting there moves on.
   */
  dropped: Promise<void>;
  drop(): void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

/** Whether an error means "ask the slot map again" (not, e.g., NOPERM). */
function isPlacementError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN)\b|Connection is closed|Stream isn't writeable/.test(message);
}

export function createShardedPubSub({
  cluster,
  openSubscriber,
  onResubscribe,
  onShardState,
}: ShardedPubSubOptions): ShardedPubSub {
  const router = new ChannelRouter();
  const shards = new Map<string, Shard>();
  /** Every wanted channel → the shard it is subscribed on (or being subscribed on). */
  const placed = new Map<string, Shard>();
  /** Channels whose first SSUBSCRIBE is in flight: later subscribers wait for it. */
  const pending = new Map<string, Promise<void>>();
  const reconnectCallbacks: Array<() => void> = [];
  let downTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const resync = () => {
    for (const callback of reconnectCallbacks) callback();
  };

  /** The primary owning `slot` now; waits for the slot map while the client has none. */
  async function ownerOf(slot: number): Promise<string> {
    for (;;) {
      const owner = cluster.slots[slot]?.[0];
      if (owner !== undefined) return owner;
      if (closed) throw new Error("pub/sub closed");
      await new Promise<void>((resolve) => {
        const done = () => {
          cluster.off("refresh", done);
          resolve();
        };
        cluster.on("refresh", done);
        setTimeout(done, DOWN_REFRESH_MS).unref();
      });
    }
  }

  function shardAt(address: string): Shard {
    const known = shards.get(address);
    if (known) return known;
    const [host, port] = splitAddress(address);
    let drop = () => {};
    const dropped = new Promise<void>((resolve) => {
      drop = resolve;
    });
    const shard: Shard = {
      address,
      redis: openSubscriber(host, port),
      channels: new Set(),
      wasReady: false,
      dropped,
      drop,
    };
    shard.redis.on("smessage", (channel: string, message: string) => router.dispatch(channel, message));
    shard.redis.on("ready", () => {
      onShardState?.(address, true);
      if (shard.wasReady && shard.channels.size > 0) {
        // Its connection came back (autoResubscribe is off: the channels are this module's to place).
        // Readers re-read once the channels are subscribed again: what is appended after their read
        // then comes as a notice.
        const groups = bySlot(shard.channels).map((group) => shard.redis.ssubscribe(...group));
        onResubscribe?.("reconnected", address, shard.channels.size);
        void Promise.allSettled(groups).then(resync);
      }
      shard.wasReady = true;
    });
    shard.redis.on("close", () => {
      onShardState?.(address, false);
      watchWhileDown();
    });
    shards.set(address, shard);
    shard.redis.connect().catch(() => {
      // Retried by its retryStrategy; readiness reports it meanwhile.
    });
    return shard;
  }

  /** SSUBSCRIBE takes the channels of one slot per call. */
  function bySlot(channels: Iterable<string>): string[][] {
    const groups = new Map<number, string[]>();
    for (const channel of channels) {
      const slot = keySlot(channel);
      const group = groups.get(slot);
      if (group) group.push(channel);
      else groups.set(slot, [channel]);
    }
    return [...groups.values()];
  }

  /** Subscribes `channel` on the shard owning its slot, asking the slot map again while it moves. */
  async function place(channel: string): Promise<void> {
    const slot = keySlot(channel);
    for (let attempt = 1; ; attempt++) {
      const address = await ownerOf(slot);
      if (!router.has(channel)) return;
      const shard = shardAt(address);
      const previous = placed.get(channel);
      if (previous && previous !== shard) previous.channels.delete(channel);
      placed.set(channel, shard);
      shard.channels.add(channel);
      try {
        const subscribing = shard.redis.ssubscribe(channel);
        subscribing.catch(() => {}); // settled below, or moot once the shard is dropped
        const outcome = await Promise.race([
          subscribing.then(() => "subscribed" as const),
          shard.dropped.then(() => "dropped" as const),
        ]);
        if (outcome === "subscribed") return;
        if (closed) throw new Error("pub/sub closed");
      } catch (error) {
        if (!isPlacementError(error) || attempt >= PLACE_ATTEMPTS || closed) throw error;
        cluster.refreshSlotsCache();
        await sleep(PLACE_RETRY_MS);
      }
    }
  }

  /** After the slot map changed: channels whose slot has a new owner move there; unused shards close. */
  function rebalance(): void {
    if (closed) return;
    const moved = new Map<Shard, string[]>();
    for (const [channel, shard] of placed) {
      const owner = cluster.slots[keySlot(channel)]?.[0];
      if (owner === undefined || owner === shard.address) continue;
      const list = moved.get(shard) ?? [];
      list.push(channel);
      moved.set(shard, list);
    }
    const placing: Array<Promise<void>> = [];
    for (const [from, channels] of moved) {
      for (const channel of channels) from.channels.delete(channel);
      if (from.redis.status === "ready") {
        for (const group of bySlot(channels)) from.redis.sunsubscribe(...group).catch(() => {});
      }
      for (const channel of channels) placing.push(replace(channel));
      onResubscribe?.("moved", from.address, channels.length);
    }
    // One subscriber per primary: open the missing ones, close those of nodes that serve no slot now.
    const primaries = new Set<string>();
    for (const owners of cluster.slots) if (owners?.[0]) primaries.add(owners[0]);
    for (const address of primaries) shardAt(address);
    for (const [address, shard] of shards) {
      if (primaries.has(address) || shard.channels.size > 0) continue;
      shards.delete(address);
      shard.drop();
      shard.redis.disconnect();
    }
    // Readers re-read once the moved channels are subscribed on their new shard, not before: an
    // append between their read and the subscription would otherwise be missed for good.
    if (placing.length > 0) void Promise.allSettled(placing).then(resync);
  }

  /**
   * Places a moved channel; settles after the first attempt. While it fails it is tried again later,
   * and a late success resyncs (notices were lost meanwhile).
   */
  function replace(channel: string, failures = 0): Promise<void> {
    return place(channel).then(
      () => {
        if (failures > 0) resync();
      },
      () => {
        if (closed || !router.has(channel)) return;
        setTimeout(() => void replace(channel, failures + 1), PLACE_RETRY_MS * 4).unref();
      },
    );
  }

  /** While a subscriber is down, ask for the slot map often: its shard may be failing over. */
  function watchWhileDown(): void {
    if (closed || downTimer) return;
    downTimer = setInterval(() => {
      const down = [...shards.values()].some((shard) => shard.redis.status !== "ready");
      if (!down || closed) {
        clearInterval(downTimer);
        downTimer = undefined;
        return;
      }
      cluster.refreshSlotsCache();
    }, DOWN_REFRESH_MS);
    downTimer.unref();
  }

  cluster.on("refresh", rebalance);

  return {
    async subscribe(channel, handler) {
      const first = router.add(channel, handler);
      try {
        if (first) {
          const placing = place(channel);
          pending.set(channel, placing);
          try {
            await placing;
          } finally {
            if (pending.get(channel) === placing) pending.delete(channel);
          }
        } else {
          // Another caller's SSUBSCRIBE may still be in flight: wait for it, or notices could be missed.
          await pending.get(channel);
        }
      } catch (error) {
        // Refused (e.g. NOPERM): forget the handler, so that a later call asks Redis again.
        if (router.remove(channel, handler)) {
          placed.get(channel)?.channels.delete(channel);
          placed.delete(channel);
        }
        throw error;
      }
    },
    unsubscribe(channel, handler) {
      if (!router.remove(channel, handler)) return;
      const shard = placed.get(channel);
      placed.delete(channel);
      if (!shard) return;
      shard.channels.delete(channel);
      shard.redis.sunsubscribe(channel).catch(() => {
        // Its connection is down; it comes back without the channel (this module re-subscribes).
      });
    },
    async publish(channel, message) {
      await cluster.spublish(channel, message);
    },
    onReconnect(callback) {
      reconnectCallbacks.push(callback);
    },
    subscribers() {
      return [...shards.values()].map((shard) => ({
        address: shard.address,
        ready: shard.redis.status === "ready",
        status: shard.redis.status,
      }));
    },
    async close() {
      closed = true;
      cluster.off("refresh", rebalance);
      if (downTimer) clearInterval(downTimer);
      for (const shard of shards.values()) {
        shard.drop();
        shard.redis.disconnect();
      }
      shards.clear();
    },
  };
}
