/**
 * Durable acknowledgements on a Redis Cluster (REDIS_WAIT_REPLICAS with REDIS_CLUSTER_NODES). A WAIT
 * covers the writes of the connection it is sent on, on the node it is sent to. So a durable write is
 * sent by this module itself, on the connection of the primary owning its key (the node connection of
 * a cluster client kept for these writes, as one Redis keeps an appender connection: a WAIT holds its
 * connection), and its confirmation is a WAIT on that same connection object, shared as on one Redis
 * (`createReplicaWait`) by the writes whose replies came before it, one per primary.
 *
 * Why not let the cluster client route the write: it does not say which connection ran a command, and
 * a WAIT sent to another connection than the write's covers nothing of it, yet answers at once with the
 * number of replicas: it would confirm what no replica may hold. A node connection of a cluster client
 * is never reconnected (a lost one ends and a new one is made for the node after a slot refresh), so a
 * WAIT on the write's connection object is answered by the primary that ran the write, or fails.
 *
 * Routing is then this module's: the slot map's primary for the key; after MOVED, the node it names;
 * after ASK (a slot being migrated), TRYAGAIN, CLUSTERDOWN, a lost connection, a slot refresh and a
 * new try `retryDelayMs` later, at most `maxTries` times. Sending a write again is safe: every durable
 * write is idempotent (the append script's request records and writer sequences; `held-3.lua`).
 */
import type { Cluster, Redis } from "ioredis";
import {
  createReplicaWait,
  type DurableWrites,
  type ReplicaWait,
  UnconfirmedAppendError,
  type Written,
} from "../store/replica-wait.js";
import { keySlot } from "./slots.js";

export interface ClusterWritesOptions {
  /** The cluster client whose node connections carry the durable writes and their WAITs. */
  cluster: Cluster;
  replicas: number;
  /** One WAIT's bound (REDIS_WAIT_TIMEOUT_MS). */
  timeoutMs: number;
  /** Between tries of a write its node refused or could not take (a failover, a migration). */
  retryDelayMs: number;
  /** Tries of one write before its error is thrown. */
  maxTries: number;
  /** Each WAIT's primary, time and whether enough replicas confirmed (metrics, logs). */
  observe?(node: string, seconds: number, confirmed: boolean, acknowledged: number): void;
}

/** The write did not run (a redirection, a shard down or loading) or may not have (the connection was lost). */
const SEND_AGAIN =
  /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|LOADING|MASTERDOWN|READONLY)\b|^Connection is closed|^Stream isn't writeable/;

const addressOf = (node: Redis) => `${node.options.host}:${node.options.port}`;

export function createClusterWrites({
  cluster,
  replicas,
  timeoutMs,
  retryDelayMs,
  maxTries,
  observe,
}: ClusterWritesOptions): DurableWrites {
  // One shared WAIT per connection object: a node's new connection (after a loss) gets its own.
  const waits = new WeakMap<Redis, ReplicaWait>();
  const waitOf = (node: Redis): ReplicaWait => {
    let wait = waits.get(node);
    if (!wait) {
      const address = addressOf(node);
      wait = createReplicaWait({
        connection: node,
        replicas,
        timeoutMs,
        ...(observe
          ? {
              observe: (seconds, confirmed, acknowledged) =>
                observe(address, seconds, confirmed, acknowledged),
            }
          : {}),
      });
      waits.set(node, wait);
    }
    return wait;
  };

  /** The primary's connection at `address` (`host:port`), if the cluster client has one. */
  const primaryAt = (address: string | undefined): Redis | undefined =>
    address === undefined ? undefined : cluster.nodes("master").find((node) => addressOf(node) === address);

  const pause = () => new Promise((resolve) => setTimeout(resolve, retryDelayMs));

  return {
    replicas,
    async send<T>(key: string, write: (connection: Redis) => Promise<T>): Promise<Written<T>> {
      const slot = keySlot(key);
      let movedTo: string | undefined;
      for (let attempt = 1; ; attempt++) {
        const node = primaryAt(movedTo) ?? primaryAt(cluster.slots[slot]?.[0]);
        movedTo = undefined;
        if (!node) {
          // No primary known for the slot yet (start-up, a failover in progress).
          if (attempt >= maxTries) throw new Error(`no Redis Cluster primary known for slot ${slot}`);
          cluster.refreshSlotsCache();
          await pause();
          continue;
        }
        try {
          const reply = await write(node);
          const wait = waitOf(node);
          return {
            reply,
            async confirm() {
              try {
                await wait.confirm();
              } catch (error) {
                // The connection was lost (its primary died) or its node is no primary any more: no
                // other connection's WAIT covers the write.
                if (error instanceof UnconfirmedAppendError) throw error;
                throw new UnconfirmedAppendError(replicas, 0);
              }
            },
          };
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          if (!SEND_AGAIN.test(message) || attempt >= maxTries) throw error;
          const moved = /^MOVED \d+ (\S+)/.exec(message);
          if (moved) {
            movedTo = moved[1];
            // The cluster client learns the new owner too (for its own commands and connections).
            cluster.refreshSlotsCache();
            if (primaryAt(movedTo)) continue;
          } else {
            cluster.refreshSlotsCache();
          }
          await pause();
        }
      }
    },
  };
}
