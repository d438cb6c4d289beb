/** Authentication for /api/v1: finds the token (header, cookie, or `access_token` for EventSource), verifies it. */
import type { IncomingHttpHeaders } from "node:http";
import { parse as parseCookies } from "cookie";
import type { RequestHandler, Response } from "express";
import { requireScope as requirePolicyScope } from "./policy.js";
import { OPEN_PRINCIPAL, type Principal, type Scope } from "./principal.js";
import { authError, type TokenVerifier } from "./verifier.js";

/** Query parameters as Express's "simple" parser (node:querystring) gives them. */
export type Query = Readonly<Record<string, unknown>>;

export function tokenFrom(headers: IncomingHttpHeaders, query: Query, cookieName: string): string | null {
  const header = headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1]! : null;
  }
  const cookieHeader = headers.cookie;
  if (cookieHeader) {
    const value = parseCookies(cookieHeader)[cookieName];
    if (value) return value;
  }
  const token = query.access_token;
  return typeof token === "string" && token !== "" ? token : null;
}

/** Who is asking: the open principal without a verifier (open mode), else the verified token's. */
export async function authenticate(
  verifier: TokenVerifier | null,
  cookieName: string,
  headers: IncomingHttpHeaders,
  query: Query,
): Promise<Principal> {
  if (!verifier) return OPEN_PRINCIPAL;
  const token = tokenFrom(headers, query, cookieName);
  if (token === null) {
    throw authError("missing_token", "send a bearer token (Authorization header, cookie, or access_token)");
  }
  return verifier(token);
}

export function createAuthenticator(verifier: TokenVerifier | null, cookieName: string): RequestHandler {
  return async (req, res, next) => {
    try {
      res.locals.principal = await authenticate(verifier, cookieName, req.headers, req.query);
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
