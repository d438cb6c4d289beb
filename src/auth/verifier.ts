/** Verifies bearer tokens (JWT, with jose): an HS256 secret or a JWKS URL (RS256/ES256, cached and refreshed). */
import {
  createRemoteJWKSet,
  type JWTPayload,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
} from "jose";
import { AppError, ERROR_STATUS, type ErrorCode } from "../errors.js";
import { type Principal, SCOPES, type Scope } from "./principal.js";

export interface VerifierOptions {
  secret?: string | undefined;
  jwksUrl?: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
  clockToleranceSeconds: number;
  /**
   * `exp` is required, and may lie at most this far ahead (plus the clock tolerance): a token that never
   * expires would hold its streams open for ever. Default one day.
   */
  maxTokenLifetimeSeconds?: number;
  /** How long fetched keys are trusted before a refetch. */
  jwksCacheMs?: number;
  /** Minimum time between refetches when a token names an unknown key (rotation). */
  jwksCooldownMs?: number;
}

export type TokenVerifier = (token: string) => Promise<Principal>;

const MAX_TOKEN_CHARS = 8192;

export function authError(code: ErrorCode, message: string): AppError {
  return new AppError(
    code,
    message,
    ERROR_STATUS[code] === 401
      ? {
          "WWW-Authenticate": `Bearer error="${code === "missing_token" ? "invalid_request" : "invalid_token"}"`,
        }
      : {},
  );
}

export function createTokenVerifier(options: VerifierOptions): TokenVerifier {
  const secretKey = options.secret ? new TextEncoder().encode(options.secret) : null;
  const jwks: JWTVerifyGetKey | null = options.jwksUrl
    ? createRemoteJWKSet(new URL(options.jwksUrl), {
        cacheMaxAge: options.jwksCacheMs ?? 600_000,
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
      })
    : null;
  const verifyOptions = {
    ...(options.issuer ? { issuer: options.issuer } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
    clockTolerance: options.clockToleranceSeconds,
    requiredClaims: ["exp"],
  };
  const maxAheadSeconds = (options.maxTokenLifetimeSeconds ?? 86_400) + options.clockToleranceSeconds;

  return async (token) => {
    if (token.length > MAX_TOKEN_CHARS) throw authError("invalid_token", "the token is too long");
    let payload: JWTPayload;
    try {
      if (secretKey && (!jwks || headerAlgorithm(token) === "HS256")) {
        ({ payload } = await jwtVerify(token, secretKey, { ...verifyOptions, algorithms: ["HS256"] }));
      } else if (jwks) {
        ({ payload } = await jwtVerify(token, jwks, { ...verifyOptions, algorithms: ["RS256", "ES256"] }));
      } else {
        throw authError("invalid_token", "no key is configured to verify tokens");
      }
    } catch (error) {
      throw toAuthError(error);
    }
    // jose checked that `exp` is a number in the future; here, that it is not too far in it.
    if ((payload.exp as number) - Date.now() / 1000 > maxAheadSeconds) {
      throw authError(
        "invalid_token",
        "the token's exp is further away than this gateway accepts (AUTH_MAX_TOKEN_LIFETIME_SECONDS)",
      );
    }
    return principalFromClaims(payload);
  };
}

function headerAlgorithm(token: string): string | null {
  try {
    const header = JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString("utf8")) as {
      alg?: unknown;
    };
    return typeof header.alg === "string" ? header.alg : null;
  } catch {
    return null;
  }
}

function toAuthError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof joseErrors.JWTExpired) return authError("token_expired", "the token has expired");
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === "exp" && error.reason === "missing") {
      return authError("invalid_token", "the token has no exp claim: every token must expire");
    }
    return authError("invalid_token", `the token's ${error.claim} claim is not accepted`);
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return authError("invalid_token", "the token's signature does not verify");
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey)
    return authError("invalid_token", "the token's key is unknown");
  if (error instanceof joseErrors.JOSEAlgNotAllowed)
    return authError("invalid_token", "the token's algorithm is not accepted");
  if (
    error instanceof joseErrors.JWKSTimeout ||
    (error instanceof Error && /fetch|ECONNREFUSED/i.test(error.message))
  ) {
    return new AppError("auth_unavailable", "the key set (JWKS) could not be fetched", {
      "Retry-After": "1",
    });
  }
  return authError("invalid_token", "the token is malformed or invalid");
}

function principalFromClaims(payload: JWTPayload): Principal {
  const rawScope = payload.scope ?? payload.scp;
  const scopeWords =
    typeof rawScope === "string" ? rawScope.split(" ") : Array.isArray(rawScope) ? rawScope : [];
  const scopes = new Set<Scope>(scopeWords.filter((word): word is Scope => SCOPES.includes(word as Scope)));
  const rawSessions = payload.sessions;
  const sessionPatterns =
    typeof rawSessions === "string"
      ? rawSessions.split(/[\s,]+/).filter((pattern) => pattern !== "")
      : Array.isArray(rawSessions)
        ? rawSessions.filter((pattern): pattern is string => typeof pattern === "string" && pattern !== "")
        : null;
  return {
    subject: typeof payload.sub === "string" && payload.sub !== "" ? payload.sub : null,
    scopes,
    sessionPatterns,
    expiresAtMs: typeof payload.exp === "number" ? payload.exp * 1000 : null,
    open: false,
  };
}
