/**
 * Every access rule of the gateway, in one place (table-driven tests: test/unit/policy.test.ts). A
 * principal is admin (an `admin` token, or anyone in open mode), or has scopes, a subject (`sub`) and
 * maybe a `sessions` claim (exact ids or `prefix*` patterns). Who may touch a session:
 *
 * | action                             | an existing session           | an id with no session (yet)                      |
 * | ---------------------------------- | ----------------------------- | ------------------------------------------------ |
 * | read (streams, status, @sessions)  | admin, the claim, the owner   | admin, the claim                                 |
 * | write (append, cancel)             | admin, the claim, the owner   | admin, the claim, a subject without a claim (it  |
 * |                                    |                               | creates the session by appending, and owns it)   |
 * | create (a run with a given id)     | (taken: 409)                  | as write                                         |
 *
 * A subject without a claim can read only what it owns, so it may not wait on ids it does not own
 * yet: another subject could create them. A session the principal may not read is answered as missing
 * (`404`), on every route (assertMaySession). Scopes: `subscribe` reads, `publish` appends, `run` starts
 * runs, and `run` or `publish` cancels; admin has all.
 */

import { errors } from "../errors.js";
import type { Principal, Scope } from "./principal.js";
import { authError } from "./verifier.js";

/** What the policy needs to know of a session: who created it. */
export interface Owned {
  owner: string | null;
}

export function isAdmin(principal: Principal): boolean {
  return principal.open || principal.scopes.has("admin");
}

export function hasScope(principal: Principal, scope: Scope): boolean {
  return isAdmin(principal) || principal.scopes.has(scope);
}

/** Whether the `sessions` claim names this id (exactly, or by a `prefix*` pattern). */
export function claimAllows(principal: Principal, sessionId: string): boolean {
  if (!principal.sessionPatterns) return false;
  return principal.sessionPatterns.some((pattern) =>
    pattern.endsWith("*") ? sessionId.startsWith(pattern.slice(0, -1)) : pattern === sessionId,
  );
}

const owns = (principal: Principal, session: Owned) =>
  session.owner !== null && session.owner === principal.subject;

export function mayReadSession(principal: Principal, sessionId: string, session: Owned | null): boolean {
  if (isAdmin(principal) || claimAllows(principal, sessionId)) return true;
  return session !== null && owns(principal, session);
}

/**
 * What a read allowed now holds for: a read allowed by ownership holds for the session as it was created
 * (its `createdAt`, the incarnation), not for the id, which anyone may create again once the session
 * expired; the reader is then detached, never handed the new session (mux/session-reader.ts). A read
 * allowed by admin or the claim holds for the id, whoever creates it: null.
 */
export function readIncarnation(
  principal: Principal,
  sessionId: string,
  session: (Owned & { createdAt: number }) | null,
): number | null {
  if (isAdmin(principal) || claimAllows(principal, sessionId) || session === null) return null;
  return session.createdAt;
}

export function mayWriteSession(principal: Principal, sessionId: string, session: Owned | null): boolean {
  return session === null
    ? mayCreateSession(principal, sessionId)
    : mayReadSession(principal, sessionId, session);
}

/**
 * Creating a session with this id: a claimed id, or (without a claim) any id, which the subject then
 * owns. A token with neither a claim nor a subject could never read what it created, so it may not.
 */
export function mayCreateSession(principal: Principal, sessionId: string): boolean {
  if (isAdmin(principal) || claimAllows(principal, sessionId)) return true;
  return principal.sessionPatterns === null && principal.subject !== null;
}

/**
 * The owner whose lifecycle feed `@sessions` reads for this principal, or null for the shared feed. A
 * subject without a `sessions` claim reads only what it owns, so it reads its own feed, which no other
 * tenant's sessions can push entries out of. Admin, and a token with a claim (which may name others'
 * sessions), read the shared feed, filtered (http/multiplex.ts).
 */
export function lifecycleFeedOwner(principal: Principal): string | null {
  if (isAdmin(principal) || principal.sessionPatterns !== null) return null;
  return principal.subject;
}

/** Owning a subscription set needs a subject (or admin): the set is checked against it on every use. */
export function mayOwnSubscription(principal: Principal): boolean {
  return isAdmin(principal) || principal.subject !== null;
}

export function mayUseSubscription(principal: Principal, owner: string | null): boolean {
  return isAdmin(principal) || (owner !== null && owner === principal.subject);
}

const COOKIE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD"]);

/**
 * Whether the auth cookie may authenticate this request. A browser sends the cookie with every request
 * to the gateway, whichever page made it (a cross-site form POST to `/cancel` included), so for anything
 * but a read (GET, HEAD) the request must come from a page the gateway trusts: its `Origin` names the
 * gateway's own host (the same host name: a port is the same site) or an origin listed in CORS_ORIGINS
 * (`*` lists none). No `Origin` (or `null`) on a write: not by cookie. Other places of the token
 * (header, `access_token`) are never sent by a browser on its own, so they need no such rule.
 */
export function mayUseCookie(
  method: string | undefined,
  origin: string | undefined,
  host: string | undefined,
  allowedOrigins: readonly string[],
): boolean {
  if (COOKIE_METHODS.has(method ?? "")) return true;
  if (origin === undefined || origin === "null") return false;
  if (allowedOrigins.includes(origin) && origin !== "*") return true;
  if (host === undefined) return false;
  try {
    return new URL(origin).hostname === new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
}

/** Cancelling needs `run` or `publish` (the producer of a session may end it too). */
export function mayCancel(principal: Principal): boolean {
  return hasScope(principal, "run") || hasScope(principal, "publish");
}

/** A prefix for generated ids when the claim allows only a prefix (so the new session stays readable). */
export function generatedIdPrefix(principal: Principal): string | null {
  if (isAdmin(principal) || (principal.sessionPatterns === null && principal.subject !== null)) return "";
  if (principal.sessionPatterns === null) return null;
  const prefix = principal.sessionPatterns.find((pattern) => pattern.endsWith("*"));
  return prefix === undefined ? null : prefix.slice(0, -1);
}

export function requireScope(principal: Principal, scope: Scope): Principal {
  if (!hasScope(principal, scope)) throw authError("insufficient_scope", `this needs the \`${scope}\` scope`);
  return principal;
}

/**
 * The one refusal for a session the principal may not read (or write): `404 not_found`, the answer a
 * missing session gets, with the same message, whether the session exists or not. So no answer tells
 * another subject's session from an id that is free (no existence oracle). `what` names it as the
 * route does when it is missing (default `session <id>`).
 */
export function assertMaySession(allowed: boolean, sessionId: string, what = `session ${sessionId}`): void {
  if (!allowed) throw errors.notFound(`no ${what}`);
}
