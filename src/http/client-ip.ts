/**
 * The client's address: the socket's peer, or the address a trusted proxy forwarded (X-Forwarded-For),
 * by `proxy-addr`. One rule, compiled once from TRUST_PROXY, serves the hot routes and Express (whose
 * `req.ip` app.ts answers with `clientIp` too). By default no peer is trusted: a forwarded address is
 * believed only from the proxies the operator names, since per-IP limits (the only ones in open mode)
 * count it.
 */
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import proxyaddr from "proxy-addr";

export type TrustRule = (address: string, hop: number) => boolean;

/** TRUST_PROXY: "false", "true", a number of hops, or a comma-separated list of addresses, subnets and names. */
export function compileTrust(setting: string): TrustRule {
  const text = setting.trim();
  if (text === "false" || text === "") return () => false;
  if (text === "true") return () => true;
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    return (_address, hop) => hop < hops;
  }
  return proxyaddr.compile(text.split(",").map((part) => part.trim()));
}

/**
 * The client's address, always an IP address (or undefined without a socket address). proxy-addr
 * returns a forwarded hop as the header's text when a trusted proxy passed on something that is not
 * an address: that counts as the proxy's own address (the socket's), so no header text ever becomes
 * a limit's key.
 */
export function clientIp(req: IncomingMessage, trust: TrustRule): string | undefined {
  const socketAddress = req.socket.remoteAddress;
  if (socketAddress === undefined) return undefined;
  const address = proxyaddr(req, trust);
  return isIP(address) !== 0 ? address : socketAddress;
}

/** An address as a key's part: an IP address, or `unknown` (defence in depth: callers pass clientIp's). */
export function ipKeyPart(ip: string | undefined): string {
  return ip !== undefined && isIP(ip) !== 0 ? ip : "unknown";
}
