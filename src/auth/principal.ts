/**
 * Who is asking. Scopes (OAuth style, space-separated in the token): `run` starts runs, `publish`
 * appends events, `subscribe` reads, `admin` does everything. A `sessions` claim (exact ids or
 * `prefix*` patterns) names the sessions a token may touch. What each may do: policy.ts.
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
