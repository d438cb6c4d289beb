/**
 * redactUrl: whatever spelling of the parameter name the query parser turns into `access_token` (the
 * name the gateway takes a token from), its value never reaches a log line. Checked against the
 * parser itself (node:querystring, which both the front and Express use), not against a list of
 * spellings.
 */
import { parse as parseQuery } from "node:querystring";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { redactUrl } from "../../src/http/request-log.js";

const SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

/** A spelling of `access_token`: each character as itself, %xx (either case), or (for `_`) as is. */
const spelledName = fc
  .array(fc.constantFrom("plain", "lower", "upper"), { minLength: 12, maxLength: 12 })
  .map((ways) =>
    [..."access_token"]
      .map((char, i) => {
        const hex = char.charCodeAt(0).toString(16);
        return ways[i] === "plain" ? char : `%${ways[i] === "upper" ? hex.toUpperCase() : hex}`;
      })
      .join(""),
  );

const otherPair = fc
  .tuple(fc.stringMatching(/^[a-z]{1,8}$/), fc.stringMatching(/^[A-Za-z0-9,._-]{0,20}$/))
  .map(([name, value]) => `${name}=${value}`);

describe("redactUrl", () => {
  it("redacts the plain name, keeping the rest of the URL", () => {
    expect(redactUrl(`/api/v1/stream?sessions=a,b&access_token=${SECRET}&x=1`)).toBe(
      "/api/v1/stream?sessions=a,b&access_token=[redacted]&x=1",
    );
    expect(redactUrl("/api/v1/stream?sessions=a")).toBe("/api/v1/stream?sessions=a");
    expect(redactUrl("/healthz")).toBe("/healthz");
  });

  it("redacts a percent-encoded name the parser decodes to access_token (access%5Ftoken)", () => {
    const url = `/api/v1/sessions/s1/stream?access%5Ftoken=${SECRET}`;
    expect(parseQuery(url.split("?")[1]!).access_token).toBe(SECRET);
    expect(redactUrl(url)).not.toContain(SECRET.split(".")[1]!);
  });

  it("never logs a value the parser would take as the token, however the name is spelled", () => {
    fc.assert(
      fc.property(
        fc.array(otherPair, { maxLength: 3 }),
        spelledName,
        fc.array(otherPair, { maxLength: 3 }),
        fc.boolean(),
        (before, name, after, repeated) => {
          const pairs = [...before, `${name}=${SECRET}`, ...after];
          if (repeated) pairs.push(`${name}=${SECRET}`);
          const url = `/api/v1/stream?${pairs.join("&")}`;
          const parsed = parseQuery(url.split("?")[1]!);
          expect(parsed.access_token).toBeDefined();
          const logged = redactUrl(url);
          for (const part of SECRET.split(".")) expect(logged).not.toContain(part);
          // The other parameters are still there.
          for (const pair of [...before, ...after]) expect(logged).toContain(pair);
        },
      ),
      { numRuns: 500 },
    );
  });
});
