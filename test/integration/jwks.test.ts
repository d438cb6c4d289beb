/**
 * Tokens verified against a JWKS served by a local HTTP server: RS256 and ES256 keys, key rotation
 * (a new kid is fetched on first sight, a retired kid stops working), keys never served, and no
 * algorithm confusion (HS256 or `alg: none` tokens are refused when only a JWKS is configured).
 */
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import {
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  SignJWT,
  UnsecuredJWT,
} from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type JsonBody, request, startTestGateway, type TestGateway } from "../helpers/index.js";

const ISSUER = "https://issuer.jwks.test";
const AUDIENCE = "sse-gateway-jwks-test";

interface SigningKey {
  kid: string;
  alg: "RS256" | "ES256";
  privateKey: CryptoKey;
  publicJwk: JWK;
  publicKey: CryptoKey;
}

async function newKey(kid: string, alg: "RS256" | "ES256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

/** A JWKS endpoint whose key list the test changes; it counts fetches. */
async function startJwksServer() {
  let keys: JWK[] = [];
  let fetches = 0;
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    if (req.url !== "/.well-known/jwks.json") {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys }));
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    serve(next: SigningKey[]) {
      keys = next.map((key) => key.publicJwk);
    },
    fetches: () => fetches,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

async function mint(
  key: SigningKey,
  claims: Record<string, unknown> = { sub: "jwks-user", scope: "run publish subscribe" },
  header: { kid?: string } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: header.kid ?? key.kid, typ: "JWT" })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(key.privateKey);
}

describe("auth with a JWKS URL", () => {
  let jwks: Awaited<ReturnType<typeof startJwksServer>>;
  let gw: TestGateway;
  let rsa1: SigningKey;
  let ec1: SigningKey;

  beforeAll(async () => {
    jwks = await startJwksServer();
    rsa1 = await newKey("rsa-1", "RS256");
    ec1 = await newKey("ec-1", "ES256");
    jwks.serve([rsa1, ec1]);
    gw = await startTestGateway({
      redisUrl: inject("redisUrl"),
      env: {
        AUTH_JWKS_URL: jwks.url,
        AUTH_JWKS_COOLDOWN_MS: "0",
        AUTH_ISSUER: ISSUER,
        AUTH_AUDIENCE: AUDIENCE,
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await jwks?.close();
  });

  const whoami = async (token: string) => {
    // Creating a session with the token, then reading it back, proves the token was accepted.
    const sessionId = `jwks-${Math.random().toString(36).slice(2, 10)}`;
    const res = await request("POST", `${gw.url}/api/v1/sessions/${sessionId}/events`, {
      body: { events: [{ type: "token", data: { content: "hi" } }] },
      headers: { authorization: `Bearer ${token}` },
    });
    return res;
  };
  const expectAccepted = (res: { status: number; body: JsonBody }) =>
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  const expectRefused = (
    res: { status: number; body: JsonBody; headers: Headers },
    code = "invalid_token",
  ) => {
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 401, code });
    expect(res.headers.get("www-authenticate") ?? "").toMatch(/^Bearer /);
  };

  it("accepts RS256 and ES256 tokens signed by served keys", async () => {
    expectAccepted(await whoami(await mint(rsa1)));
    expectAccepted(await whoami(await mint(ec1)));
  });

  it("still checks issuer, audience and expiry", async () => {
    const wrongAudience = await new SignJWT({ sub: "x", scope: "publish" })
      .setProtectedHeader({ alg: "RS256", kid: rsa1.kid })
      .setIssuer(ISSUER)
      .setAudience("another-service")
      .setExpirationTime("1h")
      .sign(rsa1.privateKey);
    expectRefused(await whoami(wrongAudience));
    const expired = await new SignJWT({ sub: "x", scope: "publish" })
      .setProtectedHeader({ alg: "ES256", kid: ec1.kid })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(ec1.privateKey);
    expectRefused(await whoami(expired), "token_expired");
  });

  it("follows a key rotation: a new kid is fetched when first seen, a retired kid is refused", async () => {
    const rsa2 = await newKey("rsa-2", "RS256");
    const oldToken = await mint(rsa1);
    expectAccepted(await whoami(oldToken));

    jwks.serve([rsa2, ec1]);
    const before = jwks.fetches();
    expectAccepted(await whoami(await mint(rsa2)));
    expect(jwks.fetches()).toBeGreaterThan(before);

    // The new set no longer has rsa-1: once refetched, tokens signed with it fail.
    expectRefused(await whoami(oldToken));
    expectRefused(await whoami(await mint(rsa1)));
    // The rotated-in key keeps working (from the cache).
    expectAccepted(await whoami(await mint(rsa2)));
  });

  it("refuses tokens signed by a key that was never served", async () => {
    const stranger = await newKey("never-served", "RS256");
    expectRefused(await whoami(await mint(stranger)));
    // A forged key that claims the kid of a served key: the signature does not verify.
    const impostor = await newKey("ec-1", "ES256");
    expectRefused(await whoami(await mint(impostor)));
    const rsaImpostor = await newKey("rsa-2", "RS256");
    expectRefused(await whoami(await mint(rsaImpostor)));
    // A token with no kid at all, signed by an unknown key.
    const noKid = await new SignJWT({ sub: "x", scope: "publish" })
      .setProtectedHeader({ alg: "RS256" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime("1h")
      .sign(stranger.privateKey);
    expectRefused(await whoami(noKid));
  });

  it("refuses HS256 and unsigned tokens when only a JWKS is configured (no algorithm confusion)", async () => {
    const claims = { sub: "x", scope: "run publish subscribe admin" };
    // The classic confusion: HMAC keyed with the server's public key (PEM and JWK forms).
    const pem = await exportSPKI(rsa1.publicKey);
    for (const secret of [pem, JSON.stringify(rsa1.publicJwk), "any-shared-secret-that-is-long-enough-000"]) {
      const hs = await new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256", kid: ec1.kid })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode(secret));
      expectRefused(await whoami(hs));
    }
    const unsigned = new UnsecuredJWT(claims)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime("1h")
      .encode();
    expectRefused(await whoami(unsigned));
    // An ES256 header on an RSA signature (and the reverse) does not verify either.
    const mislabelled = await mint(ec1);
    const [, payload, signature] = mislabelled.split(".");
    const rsHeader = Buffer.from(JSON.stringify({ alg: "RS256", kid: ec1.kid })).toString("base64url");
    expectRefused(await whoami(`${rsHeader}.${payload}.${signature}`));
  });

  it("answers 503 (not 401, not a crash) while the JWKS cannot be fetched, and recovers", async () => {
    const unknown = await newKey("rsa-3", "RS256");
    const token = await mint(unknown);
    const port = new URL(jwks.url).port;
    await jwks.close();
    const res = await whoami(token);
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({
      status: 503,
      code: "auth_unavailable",
    });
    expect(res.headers.get("retry-after")).toBe("1");
    const health = await fetch(`${gw.url}/healthz`);
    expect(health.status).toBe(200);
    // Restart the JWKS server on the same port, now serving the key: the token works.
    const again = http.createServer((_req, out) => {
      out.writeHead(200, { "content-type": "application/json" });
      out.end(JSON.stringify({ keys: [unknown.publicJwk] }));
    });
    again.listen(Number(port), "127.0.0.1");
    await once(again, "listening");
    try {
      expectAccepted(await whoami(token));
    } finally {
      again.closeAllConnections();
      await new Promise<void>((resolve) => again.close(() => resolve()));
    }
  });
});
