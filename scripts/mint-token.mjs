#!/usr/bin/env node
// Mints an HS256 token for the gateway from AUTH_JWT_SECRET (for development and scripts).
//   AUTH_JWT_SECRET=… node scripts/mint-token.mjs --sub alice --scope "run subscribe" --sessions "alice-*" --ttl 3600
import { parseArgs } from "node:util";
import { SignJWT } from "jose";

const { values } = parseArgs({
  options: {
    sub: { type: "string" },
    scope: { type: "string", default: "run publish subscribe" },
    sessions: { type: "string" },
    ttl: { type: "string", default: "3600" },
    iss: { type: "string", default: process.env.AUTH_ISSUER },
    aud: { type: "string", default: process.env.AUTH_AUDIENCE },
  },
});
const secret = process.env.AUTH_JWT_SECRET;
if (!secret) {
  console.error("set AUTH_JWT_SECRET (the gateway's secret)");
  process.exit(1);
}
const claims = { scope: values.scope };
if (values.sessions) claims.sessions = values.sessions.split(",").map((pattern) => pattern.trim());
let jwt = new SignJWT(claims)
  .setProtectedHeader({ alg: "HS256", typ: "JWT" })
  .setIssuedAt()
  .setExpirationTime(`${Number(values.ttl)}s`);
if (values.sub) jwt = jwt.setSubject(values.sub);
if (values.iss) jwt = jwt.setIssuer(values.iss);
if (values.aud) jwt = jwt.setAudience(values.aud);
console.log(await jwt.sign(new TextEncoder().encode(secret)));
