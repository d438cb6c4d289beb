/**
 * The Limiter contract: one suite that the memory and the Redis limiters must both pass, on an
 * injected clock. A refused call takes nothing: a refused `consume` leaves its window's total as it
 * was, a refused `acquire` holds no place.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Limiter } from "../../src/limits/limiter.js";

export interface LimiterHandle {
  limiter: Limiter;
  close(): Promise<void>;
}

/** Builds a fresh limiter (its own key space) that reads the time from `clock`. */
export type MakeLimiter = (clock: () => number) => Promise<LimiterHandle>;

const WINDOW_SECONDS = 60;
const WINDOW_MS = WINDOW_SECONDS * 1000;
/** Long against the test's real duration: Redis also expires the key in real time. */
const PLACE_TTL_MS = 60_000;

const newKey = (label: string) => `${label}:${randomBytes(6).toString("base64url")}`;

export function runLimiterContract(name: string, make: MakeLimiter): void {
  describe(`Limiter contract: ${name}`, () => {
    let now = 0;
    let handle: LimiterHandle;
    let limiter: Limiter;
    beforeAll(async () => {
      handle = await make(() => now);
      limiter = handle.limiter;
    });
    afterAll(() => handle?.close());
    // Every test starts 10 s into a window of the injected clock (its keys are its own).
    beforeEach(() => {
      now = 28_000_000 * WINDOW_MS + 10_000;
    });

    describe("consume", () => {
      it("accepts up to the limit in a window, then refuses until the window ends", async () => {
        const key = newKey("runs");
        for (let i = 0; i < 3; i++)
          expect(await limiter.consume(key, WINDOW_SECONDS, 1, 3)).toEqual({ ok: true });
        expect(await limiter.consume(key, WINDOW_SECONDS, 1, 3)).toEqual({
          ok: false,
          retryAfterSeconds: 50,
        });
        now += 49_500;
        expect(await limiter.consume(key, WINDOW_SECONDS, 1, 3)).toEqual({ ok: false, retryAfterSeconds: 1 });
        now += 500;
        expect(await limiter.consume(key, WINDOW_SECONDS, 1, 3)).toEqual({ ok: true });
      });

      it("a refused call counts nothing: what still fits is accepted", async () => {
        const key = newKey("runs");
        expect(await limiter.consume(key, WINDOW_SECONDS, 2, 3)).toEqual({ ok: true });
        for (let i = 0; i < 3; i++) expect((await limiter.consume(key, WINDOW_SECONDS, 2, 3)).ok).toBe(false);
        expect(await limiter.consume(key, WINDOW_SECONDS, 1, 3)).toEqual({ ok: true });
        expect((await limiter.consume(key, WINDOW_SECONDS, 1, 3)).ok).toBe(false);
      });

      it("a cost above the limit is refused and leaves the window empty", async () => {
        const key = newKey("runs");
        expect((await limiter.consume(key, WINDOW_SECONDS, 4, 3)).ok).toBe(false);
        expect(await limiter.consume(key, WINDOW_SECONDS, 3, 3)).toEqual({ ok: true });
      });

      it("keys count apart", async () => {
        const one = newKey("runs");
        const other = newKey("runs");
        expect(await limiter.consume(one, WINDOW_SECONDS, 1, 1)).toEqual({ ok: true });
        expect((await limiter.consume(one, WINDOW_SECONDS, 1, 1)).ok).toBe(false);
        expect(await limiter.consume(other, WINDOW_SECONDS, 1, 1)).toEqual({ ok: true });
      });
    });

    describe("acquire and release", () => {
      it("holds up to `limit` places; a member already holding one renews it (held) even when full", async () => {
        const key = newKey("active");
        expect(await limiter.acquire(key, "a", 2, PLACE_TTL_MS)).toBe("taken");
        expect(await limiter.acquire(key, "b", 2, PLACE_TTL_MS)).toBe("taken");
        expect(await limiter.acquire(key, "c", 2, PLACE_TTL_MS)).toBe("full");
        expect(await limiter.acquire(key, "a", 2, PLACE_TTL_MS)).toBe("held");
        expect(await limiter.acquire(key, "c", 2, PLACE_TTL_MS)).toBe("full");
      });

      it("a refused acquire holds nothing: a release frees exactly one place", async () => {
        const key = newKey("active");
        await limiter.acquire(key, "a", 2, PLACE_TTL_MS);
        await limiter.acquire(key, "b", 2, PLACE_TTL_MS);
        expect(await limiter.acquire(key, "c", 2, PLACE_TTL_MS)).toBe("full");
        await limiter.release(key, "a");
        expect(await limiter.acquire(key, "d", 2, PLACE_TTL_MS)).toBe("taken");
        expect(await limiter.acquire(key, "c", 2, PLACE_TTL_MS)).toBe("full");
        expect(await limiter.acquire(key, "e", 2, PLACE_TTL_MS)).toBe("full");
      });

      it("releasing a member that holds nothing, or twice, is harmless", async () => {
        const key = newKey("active");
        await limiter.release(key, "nobody");
        await limiter.acquire(key, "a", 1, PLACE_TTL_MS);
        await limiter.release(key, "a");
        await limiter.release(key, "a");
        expect(await limiter.acquire(key, "b", 1, PLACE_TTL_MS)).toBe("taken");
        expect(await limiter.acquire(key, "c", 1, PLACE_TTL_MS)).toBe("full");
      });

      it("a place lapses `ttlMs` after it was last taken or renewed", async () => {
        const key = newKey("active");
        await limiter.acquire(key, "a", 2, PLACE_TTL_MS);
        await limiter.acquire(key, "b", 2, PLACE_TTL_MS);
        now += PLACE_TTL_MS / 2;
        expect(await limiter.acquire(key, "a", 2, PLACE_TTL_MS)).toBe("held");
        now += PLACE_TTL_MS / 2;
        // b's place ends now; a's was renewed.
        expect(await limiter.acquire(key, "c", 2, PLACE_TTL_MS)).toBe("taken");
        expect(await limiter.acquire(key, "d", 2, PLACE_TTL_MS)).toBe("full");
      });

      it("a member whose place lapsed asks again as a newcomer", async () => {
        const key = newKey("active");
        await limiter.acquire(key, "a", 1, PLACE_TTL_MS);
        now += PLACE_TTL_MS + 1;
        expect(await limiter.acquire(key, "b", 1, PLACE_TTL_MS)).toBe("taken");
        expect(await limiter.acquire(key, "a", 1, PLACE_TTL_MS)).toBe("full");
      });
    });
  });
}
