/** Authentication for /api/v1: finds the token (header, cookie, or `access_token` for EventSource), verifies it. */
import type { IncomingHttpHeaders } from "node:http";
import { parse as parseCookies } from "cookie";
import type { RequestHandler, Response } from "express";
import type { Config } from "../config.js";
import { mayUseCookie, requireScope as requirePolicyScope } from "./policy.js";
import { OPEN_PRINCIPAL, type Principal, type Scope } from "./principal.js";
import { authError, type TokenVerifier } from "./verifier.js";

/** Query parameters as Express's "simple" parser (node:querystring) gives them. */
export type Query = Readonly<Record<string, unknown>>;

/** Where the cookie is read, and which origins may write with it (policy.ts, mayUseCookie). */
export interface CookieRule {
  name: string;
  /** CORS_ORIGINS: listed origins may write with the cookie, besides the gateway's own host. */
  writeOrigins: readonly string[];
}

export function cookieRuleOf(config: Readonly<Config>): CookieRule {
  return { name: config.auth.cookieName, writeOrigins: config.corsOrigins };
}

/** What authentication reads of a request. */
export interface Credentials {
  method?: string | undefined;
  headers: IncomingHttpHeaders;
}

/** The token, or why there is none: `cookie` when only a cookie came, on a request it may not authenticate. */
export function tokenFrom(
  req: Credentials,
  query: Query,
  cookie: CookieRule,
): { token: string } | { token: null; cookieRefused: boolean } {
  const { headers } = req;
  const header = headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? { token: match[1]! } : { token: null, cookieRefused: false };
  }
  let cookieRefused = false;
  const cookieHeader = headers.cookie;
  if (cookieHeader) {
    const value = parseCookies(cookieHeader)[cookie.name];
    if (value) {
      if (mayUseCookie(req.method, headers.origin, headers.host, cookie.writeOrigins))
        return { token: value };
      cookieRefused = true;
    }
  }
  const token = query.access_token;
  return typeof token === "string" && token !== "" ? { token } : { token: null, cookieRefused };
}

/** Who is asking: the open principal without a verifier (open mode), else the verified token's. */
export async function authenticate(
  verifier: TokenVerifier | null,
  cookie: CookieRule,
  req: Credentials,
  query: Query,
): Promise<Principal> {
  if (!verifier) return OPEN_PRINCIPAL;
  const found = tokenFrom(req, query, cookie);
  if (found.token === null) {
    throw authError(
      "missing_token",
      found.cookieRefused
        ? "the cookie authenticates reads, and writes from this gateway's own or an allowed origin (CORS_ORIGINS) only: send this request's token in the Authorization header"
        : "send a bearer token (Authorization header, cookie, or access_token)",
    );
  }
  return verifier(found.token);
}

export function createAuthenticator(verifier: TokenVerifier | null, cookie: CookieRule): RequestHandler {
  return async (req, res, next) => {
    try {
      res.locals.principal = await authenticate(verifier, cookie, req, req.query);
      next();
    } catch (error) {
      next(error);
    }
  };
}

export function principalOf(res: Response): Principal {
  return (res.locals.principal as Principal | undefined) ?? OPEN_PRINCIPAL;
}

export function requireScope(res: Response, scope: Scope): Principal {
  return requirePolicyScope(principalOf(res), scope);
}
