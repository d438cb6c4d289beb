/**
 * Requests in flight per client address, on this instance: from the request's headers until its
 * answer is over, or until it has become an open stream (streams are counted by the connection limits,
 * admission.ts). It bounds what one address may hold in sockets and buffers with requests that are
 * slow, unauthenticated or waiting, whatever they turn out to be. Per instance on purpose: what it
 * defends is this instance's memory, and it must answer before any store round trip.
 */
import type { ServerResponse } from "node:http";

const HELD = Symbol("inFlight");

interface Held {
  counter: InFlightRequests;
  ip: string;
}

type Tracked = ServerResponse & { [HELD]?: Held | undefined };

export class InFlightRequests {
  private readonly counts = new Map<string, number>();

  constructor(readonly limitPerIp: number) {}

  /**
   * Counts `res`'s request against `ip` until `settle(res)` or the response closes; false (and nothing
   * counted) when the address has `limitPerIp` requests in flight already.
   */
  enter(res: ServerResponse, ip: string): boolean {
    const count = this.counts.get(ip) ?? 0;
    if (count >= this.limitPerIp) return false;
    this.counts.set(ip, count + 1);
    (res as Tracked)[HELD] = { counter: this, ip };
    res.once("close", settleOnClose);
    return true;
  }

  /** Requests in flight from `ip` now. */
  of(ip: string): number {
    return this.counts.get(ip) ?? 0;
  }

  leave(ip: string): void {
    const count = (this.counts.get(ip) ?? 0) - 1;
    if (count > 0) this.counts.set(ip, count);
    else this.counts.delete(ip);
  }
}

/** The request is no longer in flight (answered, gone, or an open stream now): its place is given back, once. */
export function settle(res: ServerResponse): void {
  const held = (res as Tracked)[HELD];
  if (held === undefined) return;
  (res as Tracked)[HELD] = undefined;
  held.counter.leave(held.ip);
}

/** One function for every response (no closure per request). */
function settleOnClose(this: ServerResponse): void {
  settle(this);
}
