// @ts-check
/**
 * One connection for all the tabs of the dashboard: the tab that holds the Web Lock is the leader and
 * holds the EventSource; it re-broadcasts every event on a BroadcastChannel, and the other tabs render
 * from the channel. The lock is released when the leader's tab closes (or crashes), and the next tab
 * in the lock's queue becomes the leader.
 *
 * Without Web Locks (an insecure context: plain http on a host other than localhost) every tab leads:
 * each holds its own connection, as a page without tab sharing would.
 */

/**
 * Waits for the lock and calls `onLeader` once this tab holds it; the tab keeps it until it closes.
 * @param {string} name
 * @param {() => void} onLeader
 * @returns {boolean} whether tabs share one connection (Web Locks and BroadcastChannel are available)
 */
export function electLeader(name, onLeader) {
  const locks = /** @type {any} */ (navigator).locks;
  if (!locks || typeof BroadcastChannel === "undefined") {
    queueMicrotask(onLeader);
    return false;
  }
  locks
    .request(name, () => {
      onLeader();
      // Held until the tab goes away.
      return new Promise(() => {});
    })
    .catch((/** @type {unknown} */ error) => {
      console.error("dashboard: leader lock failed; this tab connects on its own", error);
      onLeader();
    });
  return true;
}

/**
 * @param {string} name
 * @param {(message: any) => void} onMessage
 * @returns {{post(message: unknown): void, close(): void}}
 */
export function openChannel(name, onMessage) {
  if (typeof BroadcastChannel === "undefined") return { post() {}, close() {} };
  const channel = new BroadcastChannel(name);
  channel.onmessage = (event) => onMessage(event.data);
  return {
    post(message) {
      try {
        channel.postMessage(message);
      } catch (error) {
        console.error("dashboard: could not broadcast", error);
      }
    },
    close() {
      channel.close();
    },
  };
}
