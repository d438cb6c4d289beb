/**
 * The client's address: the socket's peer, or the address a trusted proxy forwarded (X-Forwarded-For),
 * by `proxy-addr`. One rule, compiled once from TRUST_PROXY, serves the hot routes and Express (which
 * takes the same function as its `trust proxy` setting).
 */
import type { IncomingMessage } from "node:http";
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

export function clientIp(req: IncomingMessage, trust: TrustRule): string | undefined {
  return req.socket.remoteAddress === undefined ? undefined : proxyaddr(req, trust);
}
