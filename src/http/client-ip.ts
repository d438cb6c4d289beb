/** The client's address for a request Express does not route, by Express's own rule. */
import type { IncomingMessage } from "node:http";
import type { Express, Request } from "express";

/**
 * Express's `req.ip` (proxy-addr under the app's `trust proxy` setting), read through a view that has
 * the request's headers and socket and the app's request prototype: the request itself is not
 * re-parented, and the rule stays the one every Express route uses.
 */
export function clientIpResolver(app: Express): (req: IncomingMessage) => string | undefined {
  return (req) => {
    const view: Request = Object.create(app.request, {
      headers: { value: req.headers },
      socket: { value: req.socket },
    });
    return view.ip;
  };
}
