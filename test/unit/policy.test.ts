/** The access policy, as the table in src/auth/policy.ts states it: one row per kind of principal. */
import { describe, expect, it } from "vitest";
import {
  assertMaySession,
  generatedIdPrefix,
  lifecycleFeedOwner,
  mayCancel,
  mayCreateSession,
  mayOwnSubscription,
  mayReadSession,
  mayUseCookie,
  mayUseSubscription,
  mayWriteSession,
  readIncarnation,
  requireScope,
} from "../../src/auth/policy.js";
import { OPEN_PRINCIPAL, type Principal, type Scope } from "../../src/auth/principal.js";

function principal(
  scopes: Scope[],
  subject: string | null,
  sessionPatterns: string[] | null = null,
): Principal {
  return { subject, scopes: new Set(scopes), sessionPatterns, expiresAtMs: null, open: false };
}

const OWNED_BY_ALICE = { owner: "alice" };
const OWNED_BY_BOB = { owner: "bob" };
const NOBODYS = { owner: null };

interface Row {
  who: string;
  principal: Principal;
  /** read/write of "s-1": owned by alice, owned by bob, owned by nobody, not existing */
  read: [boolean, boolean, boolean, boolean];
  write: [boolean, boolean, boolean, boolean];
  create: boolean;
}

const rows: Row[] = [
  {
    who: "open mode",
    principal: OPEN_PRINCIPAL,
    read: [true, true, true, true],
    write: [true, true, true, true],
    create: true,
  },
  {
    who: "an admin token",
    principal: principal(["admin"], "ops"),
    read: [true, true, true, true],
    write: [true, true, true, true],
    create: true,
  },
  {
    who: "alice, no claim",
    principal: principal(["subscribe", "publish", "run"], "alice"),
    read: [true, false, false, false],
    write: [true, false, false, true],
    create: true,
  },
  {
    who: "carol, claim s-*",
    principal: principal(["subscribe", "publish"], "carol", ["s-*"]),
    read: [true, true, true, true],
    write: [true, true, true, true],
    create: true,
  },
  {
    who: "dave, claim other-1 only",
    principal: principal(["subscribe", "publish"], "dave", ["other-1"]),
    read: [false, false, false, false],
    write: [false, false, false, false],
    create: false,
  },
  {
    who: "a token without sub or claim",
    principal: principal(["subscribe", "publish"], null),
    read: [false, false, false, false],
    write: [false, false, false, false],
    create: false,
  },
];

const sessions = [OWNED_BY_ALICE, OWNED_BY_BOB, NOBODYS, null] as const;

describe("access policy", () => {
  for (const row of rows) {
    it(`${row.who}: reads, writes and creates as the table says`, () => {
      expect(sessions.map((session) => mayReadSession(row.principal, "s-1", session))).toEqual(row.read);
      expect(sessions.map((session) => mayWriteSession(row.principal, "s-1", session))).toEqual(row.write);
      expect(mayCreateSession(row.principal, "s-1")).toBe(row.create);
    });
  }

  it("a session that does not exist yet is readable only through admin or a claim (nobody may wait on another's ids)", () => {
    expect(mayReadSession(principal(["subscribe"], "alice"), "future", null)).toBe(false);
    expect(mayReadSession(principal(["subscribe"], "alice", ["fut*"]), "future", null)).toBe(true);
  });

  it("scopes: subscribe reads, publish appends, run starts; run or publish cancels; admin has all", () => {
    expect(() => requireScope(principal(["publish"], "a"), "subscribe")).toThrow(/subscribe/);
    expect(requireScope(principal(["admin"], "a"), "run").subject).toBe("a");
    expect(mayCancel(principal(["publish"], "a"))).toBe(true);
    expect(mayCancel(principal(["run"], "a"))).toBe(true);
    expect(mayCancel(principal(["subscribe"], "a"))).toBe(false);
  });

  it("subscription sets belong to a subject; admin may use any", () => {
    expect(mayOwnSubscription(principal(["subscribe"], "a"))).toBe(true);
    expect(mayOwnSubscription(principal(["subscribe"], null, ["x"]))).toBe(false);
    expect(mayUseSubscription(principal(["subscribe"], "a"), "a")).toBe(true);
    expect(mayUseSubscription(principal(["subscribe"], "a"), "b")).toBe(false);
    expect(mayUseSubscription(principal(["subscribe"], "a"), null)).toBe(false);
    expect(mayUseSubscription(principal(["admin"], "ops"), "b")).toBe(true);
  });

  it("generated ids: free for a subject, under the claim's prefix, impossible without either", () => {
    expect(generatedIdPrefix(principal(["run"], "a"))).toBe("");
    expect(generatedIdPrefix(principal(["run"], "a", ["team-*", "x"]))).toBe("team-");
    expect(generatedIdPrefix(principal(["run"], "a", ["x"]))).toBeNull();
    expect(generatedIdPrefix(principal(["run"], null))).toBeNull();
  });

  it("a session the principal may not read is refused as a missing one: 404 not_found, never 403", () => {
    const refusal = (() => {
      try {
        assertMaySession(mayReadSession(principal(["subscribe"], "alice"), "s-1", OWNED_BY_BOB), "s-1");
      } catch (error) {
        return error as { status: number; code: string; message: string };
      }
      return null;
    })();
    expect(refusal).toMatchObject({ status: 404, code: "not_found", message: "no session s-1" });
    expect(() => assertMaySession(true, "s-1")).not.toThrow();
  });

  it.each([
    // method, Origin, Host, CORS_ORIGINS, may the cookie authenticate it
    ["GET", undefined, "gw.example", [], true],
    ["HEAD", "https://evil.example", "gw.example", [], true],
    ["POST", undefined, "gw.example", [], false],
    ["POST", "null", "gw.example", [], false],
    ["POST", "https://evil.example", "gw.example", [], false],
    ["POST", "https://evil.example", "gw.example", ["*"], false],
    ["POST", "https://gw.example", "gw.example", [], true],
    ["POST", "https://gw.example:8443", "gw.example", [], true],
    ["POST", "https://gw.example.evil.example", "gw.example", [], false],
    ["PATCH", "https://app.example", "gw.example", ["https://app.example"], true],
    ["POST", "https://app.example:444", "gw.example", ["https://app.example"], false],
    ["POST", "https://gw.example", undefined, [], false],
  ] as const)(
    "the cookie on %s from Origin %s to Host %s (CORS_ORIGINS %j): %s",
    (method, origin, host, listed, allowed) => {
      expect(mayUseCookie(method, origin, host, listed)).toBe(allowed);
    },
  );

  it("@sessions: a subject without a claim reads its own feed; admin, open mode and claims read the shared one", () => {
    expect(lifecycleFeedOwner(principal(["subscribe"], "alice"))).toBe("alice");
    expect(lifecycleFeedOwner(principal(["subscribe"], "carol", ["s-*"]))).toBeNull();
    expect(lifecycleFeedOwner(principal(["admin"], "ops"))).toBeNull();
    expect(lifecycleFeedOwner(OPEN_PRINCIPAL)).toBeNull();
    expect(lifecycleFeedOwner(principal(["subscribe"], null))).toBeNull();
  });

  it("a read allowed by ownership holds for the session as created; by admin or a claim, for the id", () => {
    const alicesSession = { owner: "alice", createdAt: 1234 };
    expect(readIncarnation(principal(["subscribe"], "alice"), "s-1", alicesSession)).toBe(1234);
    expect(readIncarnation(principal(["subscribe"], "carol", ["s-*"]), "s-1", alicesSession)).toBeNull();
    expect(readIncarnation(principal(["admin"], "ops"), "s-1", alicesSession)).toBeNull();
    expect(readIncarnation(OPEN_PRINCIPAL, "s-1", alicesSession)).toBeNull();
    expect(readIncarnation(principal(["subscribe"], "carol", ["s-*"]), "s-1", null)).toBeNull();
  });
});
