/** Authentication for /api/v1: finds the token (header, cookie, or `access_token` for EventSource), verifies it. */
import { parse as parseCookies } from "cookie";
import type { Request, RequestHandler, Response } from "express";
import { hasScope, OPEN_PRINCIPAL, type Principal, type Scope } from "./principal.js";
import { authError, type TokenVerifier } from "./verifier.js";

export function tokenFrom(req: Request, cookieName: string): string | null {
  const header = req.get("authorization");
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1]! : null;
  }
  const cookieHeader = req.get("cookie");
  if (cookieHeader) {
    const value = parseCookies(cookieHeader)[cookieName];
    if (value) return value;
  }
  const query = req.query.access_token;
  return typeof query === "string" && query !== "" ? query : null;
}

/** With no verifier (open mode) every request gets the open principal. */
export function createAuthenticator(verifier: TokenVerifier | null, cookieName: string): RequestHandler {
  return async (req, res, next) => {
    if (!verifier) {
      res.locals.principal = OPEN_PRINCIPAL;
      return next();
    }
    const token = tokenFrom(req, cookieName);
    if (token === null) {
      return next(
        authError(
          401,
          "missing_token",
          "send a bearer token (Authorization header, cookie, or access_token)",
        ),
      );
    }
    try {
      res.locals.principal = await verifier(token);
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
  const principal = principalOf(res);
  if (!hasScope(principal, scope))
    throw authError(403, "insufficient_scope", `this needs the \`${scope}\` scope`);
  return principal;
}

export function forbiddenSession(sessionId: string) {
  return authError(403, "forbidden", `this token may not access session ${sessionId}`);
}
