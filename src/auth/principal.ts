/**
 * Who is asking, and what they may do. Scopes (OAuth style, space-separated in the token): `run`
 * starts runs, `publish` appends events, `subscribe` reads, `admin` does everything. A `sessions`
 * claim (exact ids or `prefix*` patterns) limits which sessions a token may touch; without it, a
 * token reaches the sessions its subject created.
 */
export type Scope = "run" | "publish" | "subscribe" | "admin";

export const SCOPES: readonly Scope[] = ["run", "publish", "subscribe", "admin"];

export interface Principal {
  /** The token's `sub`; null in open mode. */
  subject: string | null;
  scopes: ReadonlySet<Scope>;
  /** The `sessions` claim, or null when the token has none. */
  sessionPatterns: readonly string[] | null;
  /** When the token expires (ms since epoch), or null. */
  expiresAtMs: number | null;
  /** Open mode (no authentication configured): everything is allowed. */
  open: boolean;
}

export const OPEN_PRINCIPAL: Principal = Object.freeze({
  subject: null,
  scopes: new Set<Scope>(SCOPES),
  sessionPatterns: null,
  expiresAtMs: null,
  open: true,
});

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

/** Reading or writing an existing session: admin, the claim, or the session's creator. */
export function canAccessSession(principal: Principal, sessionId: string, owner: string | null): boolean {
  if (isAdmin(principal) || claimAllows(principal, sessionId)) return true;
  return owner !== null && owner === principal.subject;
}

/**
 * Creating a session with this id: a claimed id, or (without a claim) any id, which the subject then
 * owns. A token with neither a claim nor a subject could never read what it created, so it may not.
 */
export function canCreateSession(principal: Principal, sessionId: string): boolean {
  if (isAdmin(principal) || claimAllows(principal, sessionId)) return true;
  return principal.sessionPatterns === null && principal.subject !== null;
}

/** Owning a subscription set needs a subject (or admin): the set is checked against it on every use. */
export function canOwnSubscription(principal: Principal): boolean {
  return isAdmin(principal) || principal.subject !== null;
}

/** A prefix for generated ids when the claim allows only a prefix (so the new session stays readable). */
export function generatedIdPrefix(principal: Principal): string | null {
  if (isAdmin(principal) || (principal.sessionPatterns === null && principal.subject !== null)) return "";
  if (principal.sessionPatterns === null) return null;
  const prefix = principal.sessionPatterns.find((pattern) => pattern.endsWith("*"));
  return prefix === undefined ? null : prefix.slice(0, -1);
}
