/**
 * CORS headers as a browser reads them, on JSON routes, streams and preflights: listed origins get their
 * origin back with `Access-Control-Allow-Credentials: true` (so the auth cookie can go with
 * `EventSource(url, {withCredentials: true})`), an unlisted origin gets neither, every answer under a
 * list varies by Origin, and `*` allows any origin without credentials. The browser itself is in
 * test/e2e/cors-credentials.test.ts.
 */
import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSse, startTestGateway, type TestGateway } from "../helpers/index.js";

const LISTED = ["http://app.example", "http://admin.example:8443"] as const;
const UNLISTED = "http://evil.example";

type Headers = Record<string, string | undefined>;

const fromFetch = (res: Response): Headers => Object.fromEntries(res.headers.entries());
const fromNode = (headers: IncomingHttpHeaders): Headers =>
  Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, String(value)]));

const varies = (headers: Headers, name: string) =>
  (headers.vary ?? "")
    .split(",")
    .map((part) => part.trim().toLowerCase())
    .includes(name.toLowerCase());

/** The answers of one gateway, from one origin (or none), on each kind of route. */
async function answers(gw: TestGateway, origin: string | undefined) {
  const originHeader: Record<string, string> = origin ? { origin } : {};
  const json = await fetch(`${gw.url}/api/v1/sessions/cors-${randomBytes(4).toString("hex")}`, {
    headers: originHeader,
  });
  await json.text();
  const append = await fetch(`${gw.url}/api/v1/sessions/cors-${randomBytes(4).toString("hex")}/events`, {
    method: "POST",
    headers: { ...originHeader, "content-type": "application/json" },
    body: JSON.stringify({ events: [{ type: "token", data: { content: "x" } }] }),
  });
  await append.text();
  const stream = await openSse(`${gw.url}/api/v1/stream?sessions=@sessions`, { headers: originHeader });
  const streamHeaders = fromNode(stream.headers);
  stream.close();
  const preflight = await fetch(`${gw.url}/api/v1/sessions`, {
    method: "OPTIONS",
    headers: {
      ...originHeader,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  });
  await preflight.text();
  expect([json.status, append.status, stream.status]).toEqual([404, 202, 200]);
  return {
    headers: {
      json: fromFetch(json),
      append: fromFetch(append),
      stream: streamHeaders,
      preflight: fromFetch(preflight),
    },
    preflightStatus: preflight.status,
  };
}

describe("CORS with listed origins", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ env: { CORS_ORIGINS: LISTED.join(",") } });
  });
  afterAll(() => gw.close());

  for (const origin of LISTED) {
    it(`lets ${origin} send credentials, on every kind of route`, async () => {
      const all = await answers(gw, origin);
      for (const [route, headers] of Object.entries(all.headers)) {
        expect(headers["access-control-allow-origin"], route).toBe(origin);
        expect(headers["access-control-allow-credentials"], route).toBe("true");
        expect(varies(headers, "Origin"), `${route}: Vary ${headers.vary}`).toBe(true);
      }
      expect(all.preflightStatus).toBe(204);
      expect(all.headers.preflight["access-control-allow-headers"]).toMatch(/Content-Type/);
    });
  }

  it("gives an unlisted origin neither its origin nor credentials, and still varies by Origin", async () => {
    for (const [route, headers] of Object.entries((await answers(gw, UNLISTED)).headers)) {
      expect(headers["access-control-allow-origin"], route).toBeUndefined();
      expect(headers["access-control-allow-credentials"], route).toBeUndefined();
      expect(varies(headers, "Origin"), `${route}: Vary ${headers.vary}`).toBe(true);
    }
  });

  it("sends no CORS headers to a request without an Origin", async () => {
    for (const [route, headers] of Object.entries((await answers(gw, undefined)).headers)) {
      expect(headers["access-control-allow-origin"], route).toBeUndefined();
      expect(headers["access-control-allow-credentials"], route).toBeUndefined();
    }
  });
});

describe("CORS with `*`", () => {
  for (const setting of ["*", `${LISTED[0]},*`]) {
    it(`CORS_ORIGINS=${setting}: any origin, never with credentials, reflecting nothing`, async () => {
      const gw = await startTestGateway({ env: { CORS_ORIGINS: setting } });
      try {
        for (const origin of [LISTED[0], UNLISTED]) {
          for (const [route, headers] of Object.entries((await answers(gw, origin)).headers)) {
            expect(headers["access-control-allow-origin"], `${route} from ${origin}`).toBe("*");
            expect(headers["access-control-allow-credentials"], `${route} from ${origin}`).toBeUndefined();
          }
        }
      } finally {
        await gw.close();
      }
    });
  }
});
