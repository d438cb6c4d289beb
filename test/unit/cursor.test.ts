import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type CursorEntries,
  CursorError,
  type CursorLimits,
  CursorTracker,
  decodeCursor,
  encodeCursor,
} from "../../src/mux/cursor.js";
import { parsePosition } from "../../src/store/positions.js";

const GENEROUS: CursorLimits = { maxIndex: 2 ** 31, maxEntries: 200_000, maxLength: 10_000_000 };
const MAX_MS = 2 ** 48;
const MAX_SEQ = 2 ** 32;

const positionArb = fc
  .record({
    ms: fc.integer({ min: 0, max: MAX_MS }),
    seq: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: MAX_SEQ })),
  })
  .map(({ ms, seq }) => `${ms}-${seq}`);

function entriesArb(indexArb: fc.Arbitrary<number>, maxLength: number): fc.Arbitrary<CursorEntries> {
  return fc
    .uniqueArray(fc.tuple(indexArb, fc.option(positionArb, { freq: 3 })), {
      selector: ([index]) => index,
      maxLength,
    })
    .map((rows) => {
      const entries: CursorEntries = { positions: new Map(), finished: new Set() };
      for (const [index, position] of rows) {
        if (position === null) entries.finished.add(index);
        else entries.positions.set(index, position);
      }
      return entries;
    });
}

/** Sparse indexes up to 100000, runs of consecutive ones, and a few huge ones. */
const indexArb = fc.oneof(
  { arbitrary: fc.nat(100_000), weight: 4 },
  { arbitrary: fc.nat(64), weight: 4 },
  { arbitrary: fc.nat(2 ** 31), weight: 1 },
);

function runRange(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, k) => first + k);
}

/** Decodes, or returns the CursorError; anything else thrown fails the test. */
function decodeOrError(text: string, limits: CursorLimits): CursorEntries | CursorError {
  try {
    return decodeCursor(text, limits);
  } catch (error) {
    if (error instanceof CursorError) return error;
    throw error;
  }
}

function expectWithinLimits(entries: CursorEntries, limits: CursorLimits): void {
  expect(entries.positions.size + entries.finished.size).toBeLessThanOrEqual(limits.maxEntries);
  for (const [index, position] of entries.positions) {
    expect(Number.isSafeInteger(index) && index >= 0 && index <= limits.maxIndex).toBe(true);
    expect(parsePosition(position)).not.toBeNull();
    expect(entries.finished.has(index)).toBe(false);
  }
  for (const index of entries.finished) {
    expect(Number.isSafeInteger(index) && index >= 0 && index <= limits.maxIndex).toBe(true);
  }
  // Whatever decodes is stable: it re-encodes to a cursor that decodes to the same entries.
  expect(decodeCursor(encodeCursor(entries), GENEROUS)).toEqual(entries);
}

/** Hand-built payloads for the error cases. */
function cursorOf(bytes: number[]): string {
  return "1" + Buffer.from(bytes).toString("base64url");
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) + 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return bytes;
}

describe("encodeCursor / decodeCursor", () => {
  it("round-trips any positions and finished sets", () => {
    fc.assert(
      fc.property(entriesArb(indexArb, 300), (entries) => {
        const text = encodeCursor(entries);
        expect(text).toMatch(/^1[A-Za-z0-9_-]+$/);
        expect(decodeCursor(text, GENEROUS)).toEqual(entries);
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips contiguous finished ranges and huge sparse indexes", () => {
    const cases: CursorEntries[] = [
      { positions: new Map(), finished: new Set(runRange(0, 5000)) },
      { positions: new Map(), finished: new Set([0, 2 ** 31, 2 ** 31 - 1, 7]) },
      { positions: new Map([[2 ** 31, "281474976710656-4294967296"]]), finished: new Set(runRange(10, 100)) },
      { positions: new Map([[0, "0-0"]]), finished: new Set([1, 3, 5, 7, 9, 11, 13, 15]) },
    ];
    for (const entries of cases) {
      const text = encodeCursor(entries);
      expect(decodeCursor(text, GENEROUS)).toEqual(entries);
    }
    // A 2^31 bitmap would be 256 MiB; runs keep it tiny.
    expect(encodeCursor(cases[1]!).length).toBeLessThan(30);
  });

  it("encodes the empty cursor", () => {
    const text = encodeCursor({ positions: new Map(), finished: new Set() });
    expect(text).toMatch(/^1[A-Za-z0-9_-]+$/);
    expect(decodeCursor(text, { maxIndex: 0, maxEntries: 0, maxLength: text.length })).toEqual({
      positions: new Map(),
      finished: new Set(),
    });
  });

  it("handles ms and seq up to 15 digits without precision loss", () => {
    const positions = new Map([
      [0, "999999999999999-999999999999999"],
      [1, "0-0"],
      [5, `${2 ** 48}-${2 ** 32}`],
    ]);
    const entries = { positions, finished: new Set<number>() };
    expect(decodeCursor(encodeCursor(entries), GENEROUS)).toEqual(entries);
  });

  it("normalizes positions with leading zeros", () => {
    const text = encodeCursor({ positions: new Map([[3, "0017-007"]]), finished: new Set() });
    expect(decodeCursor(text, GENEROUS).positions.get(3)).toBe("17-7");
  });

  it("rejects what the caller got wrong", () => {
    const finished = new Set<number>();
    expect(() => encodeCursor({ positions: new Map([[1, "1-2"]]), finished: new Set([1]) })).toThrow(
      RangeError,
    );
    expect(() => encodeCursor({ positions: new Map([[-1, "1-2"]]), finished })).toThrow(RangeError);
    expect(() => encodeCursor({ positions: new Map([[1.5, "1-2"]]), finished })).toThrow(RangeError);
    expect(() => encodeCursor({ positions: new Map(), finished: new Set([-3]) })).toThrow(RangeError);
    for (const bad of ["", "1", "1-", "-1", "a-1", "1-2-3", "1234567890123456-0", "1-2 "]) {
      expect(() => encodeCursor({ positions: new Map([[0, bad]]), finished })).toThrow(TypeError);
    }
  });
});

describe("decodeCursor limits and errors", () => {
  const limits: CursorLimits = { maxIndex: 1000, maxEntries: 50, maxLength: 500 };

  it.each([
    ["empty", "", /empty/],
    ["unknown version", "2AAA", /unknown version/],
    ["bad characters", "1AA+A", /characters/],
    ["padding", "1AA==", /characters/],
    ["dangling base64 character", "1AAAAA", /base64url/],
    ["stray low bits", "1AAB", /base64url/],
    ["truncated", cursorOf([1]), /truncated/],
    ["trailing bytes", cursorOf([0, 0, 0]), /trailing/],
    ["index above maxIndex", cursorOf([1, 5, ...varint(1001), 0, 0]), /index 1001 above 1000/],
    ["too many positioned", cursorOf([51]), /more than 50 entries/],
    ["too many finished", cursorOf([0, 2, 1, 0, 60]), /more than 50 entries/],
    ["finished index above maxIndex", cursorOf([0, 2, 1, ...varint(1001), 0]), /index 1001 above 1000/],
    ["bitmap index above maxIndex", cursorOf([0, 1, 126, ...new Array<number>(125).fill(0), 0x80]), /above/],
    ["varint longer than 8 bytes", cursorOf([...new Array<number>(8).fill(0x81), 0]), /longer than 8 bytes/],
    ["varint beyond 2^53", cursorOf([...new Array<number>(7).fill(0xff), 0x7f]), /beyond 2\^53/],
    ["ms beyond 15 digits", cursorOf([1, ...varint(10 ** 15), 0, 0, 0]), /ms beyond/],
    ["seq beyond 15 digits", cursorOf([1, 0, 0, 1, ...varint(10 ** 15), 0]), /seq beyond/],
    ["positioned and finished", cursorOf([1, 0, 3, 0, 1, 1, 0b1000]), /both positioned and finished/],
    ["unknown finished encoding", cursorOf([0, 3]), /unknown finished-set encoding/],
    ["untrimmed bitmap", cursorOf([0, 1, 2, 1, 0]), /untrimmed bitmap/],
    ["empty run list", cursorOf([0, 2, 0]), /empty run list/],
  ])("rejects %s", (_name, text, message) => {
    const error = decodeOrError(text, limits);
    expect(error).toBeInstanceOf(CursorError);
    expect((error as CursorError).code).toBe("invalid_cursor");
    expect((error as CursorError).message).toMatch(message);
  });

  it("rejects cursors longer than maxLength before decoding them", () => {
    expect(() => decodeCursor("1" + "A".repeat(500), limits)).toThrow(/longer than 500 characters/);
  });

  it("does not expand a huge finished run", () => {
    // Runs [0, 2^31): a few bytes that claim two billion finished sessions.
    const text = cursorOf([0, 2, 1, 0, ...varint(2 ** 31 - 1)]);
    const started = performance.now();
    expect(() => decodeCursor(text, { maxIndex: 2 ** 31, maxEntries: 100_000, maxLength: 100 })).toThrow(
      /more than 100000 entries/,
    );
    expect(performance.now() - started).toBeLessThan(100);
  });

  it("enforces each limit exactly", () => {
    fc.assert(
      fc.property(entriesArb(fc.nat(5000), 100), (entries) => {
        const text = encodeCursor(entries);
        const total = entries.positions.size + entries.finished.size;
        const highest = Math.max(-1, ...entries.positions.keys(), ...entries.finished);
        const exact = { maxIndex: Math.max(0, highest), maxEntries: total, maxLength: text.length };
        expect(decodeCursor(text, exact)).toEqual(entries);
        expect(() => decodeCursor(text, { ...exact, maxLength: text.length - 1 })).toThrow(CursorError);
        if (total > 0)
          expect(() => decodeCursor(text, { ...exact, maxEntries: total - 1 })).toThrow(CursorError);
        if (highest > 0)
          expect(() => decodeCursor(text, { ...exact, maxIndex: highest - 1 })).toThrow(CursorError);
      }),
      { numRuns: 300 },
    );
  });
});

describe("decodeCursor on malformed input", () => {
  const limits: CursorLimits = { maxIndex: 100_000, maxEntries: 1000, maxLength: 4096 };
  const validArb = entriesArb(fc.nat(2000), 60).map(encodeCursor);

  it("random strings decode within limits or throw CursorError", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: "binary" }), fc.string(), fc.stringMatching(/^1[A-Za-z0-9_-]{0,80}$/)),
        (text) => {
          const result = decodeOrError(text, limits);
          if (!(result instanceof CursorError)) expectWithinLimits(result, limits);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("truncated valid cursors decode within limits or throw CursorError", () => {
    fc.assert(
      fc.property(validArb, fc.nat(), (text, cut) => {
        const truncated = text.slice(0, cut % text.length);
        const result = decodeOrError(truncated, limits);
        if (!(result instanceof CursorError)) expectWithinLimits(result, limits);
      }),
      { numRuns: 500 },
    );
  });

  it("wrong versions are rejected", () => {
    fc.assert(
      fc.property(
        validArb,
        fc.string({ minLength: 1, maxLength: 1 }).filter((c) => c !== "1"),
        (text, version) => {
          expect(() => decodeCursor(version + text.slice(1), limits)).toThrow(/unknown version/);
        },
      ),
    );
  });

  it("bit flips and character swaps decode within limits or throw CursorError", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    fc.assert(
      fc.property(validArb, fc.nat(), fc.nat(7), fc.nat(63), (text, at, bit, char) => {
        const bytes = Buffer.from(text.slice(1), "base64url");
        if (bytes.length > 0) bytes[at % bytes.length]! ^= 1 << bit;
        const flipped = "1" + bytes.toString("base64url");
        const slot = 1 + (at % Math.max(1, text.length - 1));
        const swapped = text.slice(0, slot) + alphabet[char] + text.slice(slot + 1);
        for (const candidate of [flipped, swapped]) {
          const result = decodeOrError(candidate, limits);
          if (!(result instanceof CursorError)) expectWithinLimits(result, limits);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("CursorTracker", () => {
  type Op =
    | { kind: "set"; index: number; position: string }
    | { kind: "finish"; index: number }
    | { kind: "forget"; index: number }
    | { kind: "encode" };
  const opIndexArb = fc.oneof(
    { arbitrary: fc.nat(40), weight: 5 },
    { arbitrary: fc.nat(100_000), weight: 1 },
  );
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
      arbitrary: fc.record({ kind: fc.constant("set" as const), index: opIndexArb, position: positionArb }),
      weight: 5,
    },
    { arbitrary: fc.record({ kind: fc.constant("finish" as const), index: opIndexArb }), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant("forget" as const), index: opIndexArb }), weight: 1 },
    { arbitrary: fc.constant({ kind: "encode" as const }), weight: 3 },
  );

  it("encodes exactly like encodeCursor of its state after any operations", () => {
    fc.assert(
      fc.property(entriesArb(fc.nat(60), 30), fc.array(opArb, { maxLength: 120 }), (initial, ops) => {
        const tracker = new CursorTracker(initial);
        const model: CursorEntries = {
          positions: new Map(initial.positions),
          finished: new Set(initial.finished),
        };
        for (const op of ops) {
          if (op.kind === "set") {
            tracker.setPosition(op.index, op.position);
            model.finished.delete(op.index);
            model.positions.set(op.index, op.position);
          } else if (op.kind === "finish") {
            tracker.markFinished(op.index);
            model.positions.delete(op.index);
            model.finished.add(op.index);
          } else if (op.kind === "forget") {
            tracker.forget(op.index);
            model.positions.delete(op.index);
            model.finished.delete(op.index);
          } else {
            const text = tracker.encode();
            expect(text).toBe(encodeCursor(model));
            expect(tracker.encode()).toBe(text);
          }
          if (op.kind !== "encode") {
            const position = model.positions.get(op.index);
            const expected = position
              ? { kind: "at", position }
              : model.finished.has(op.index)
                ? { kind: "finished" }
                : { kind: "none" };
            expect(tracker.get(op.index)).toEqual(expected);
          }
        }
        expect(tracker.size).toBe(model.positions.size + model.finished.size);
        expect(tracker.toEntries()).toEqual(model);
        expect(tracker.encode()).toBe(encodeCursor(model));
        expect(decodeCursor(tracker.encode(), GENEROUS)).toEqual(model);
      }),
      { numRuns: 500 },
    );
  });

  it("returns the cached string until something changes", () => {
    const tracker = new CursorTracker();
    tracker.setPosition(0, "1700000000000-0");
    const first = tracker.encode();
    expect(tracker.encode()).toBe(first);
    tracker.setPosition(0, "1700000000000-0");
    tracker.markFinished(3);
    const second = tracker.encode();
    tracker.markFinished(3);
    tracker.forget(9);
    expect(tracker.encode()).toBe(second);
  });

  it("accepts exactly the positions parsePosition accepts", () => {
    fc.assert(
      fc.property(fc.oneof(positionArb, fc.stringMatching(/^[0-9-]{0,34}$/), fc.string()), (position) => {
        const tracker = new CursorTracker();
        const valid = parsePosition(position) !== null;
        if (valid) tracker.setPosition(1, position);
        else expect(() => tracker.setPosition(1, position)).toThrow(TypeError);
      }),
      { numRuns: 1000 },
    );
  });

  it("leaves its state unchanged when given an invalid position", () => {
    const tracker = new CursorTracker();
    tracker.setPosition(2, "5-1");
    expect(() => tracker.setPosition(2, "oops")).toThrow(TypeError);
    expect(() => tracker.setPosition(-1, "5-1")).toThrow(RangeError);
    expect(tracker.get(2)).toEqual({ kind: "at", position: "5-1" });
    expect(tracker.encode()).toBe(encodeCursor({ positions: new Map([[2, "5-1"]]), finished: new Set() }));
  });

  it("rejects an initial state with an index both positioned and finished", () => {
    expect(() => new CursorTracker({ positions: new Map([[1, "1-1"]]), finished: new Set([1]) })).toThrow(
      RangeError,
    );
  });
});

describe("cursor sizes", () => {
  /** Deterministic, so the printed sizes are reproducible (mulberry32). */
  function random(seed: number): () => number {
    let state = seed;
    return () => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
  }
  const FIVE_MINUTES_MS = 5 * 60_000;
  const BASE_MS = 1_760_000_000_000;

  function scenario(sessions: number, finishedShare: number, seed: number): CursorEntries {
    const next = random(seed);
    const entries: CursorEntries = { positions: new Map(), finished: new Set() };
    for (let index = 0; index < sessions; index++) {
      if (next() < finishedShare) entries.finished.add(index);
      else entries.positions.set(index, `${BASE_MS + Math.floor(next() * FIVE_MINUTES_MS)}-0`);
    }
    return entries;
  }

  it("stays small for realistic connections", () => {
    const rows = [1, 10, 100, 1000].map((sessions) => {
      const running = encodeCursor(scenario(sessions, 0, sessions));
      const mostlyFinished = encodeCursor(scenario(sessions, 0.9, sessions + 1));
      const finishedOnly = encodeCursor(scenario(sessions, 1, sessions + 2));
      // Finished-only with holes (10% of the sessions removed): the bitmap's case, not a single run.
      const holes = scenario(sessions, 0.9, sessions + 3);
      const finishedWithHoles = encodeCursor({ positions: new Map(), finished: holes.finished });
      const tracker = new CursorTracker(scenario(sessions, 0, sessions));
      expect(tracker.encode()).toBe(running);
      return {
        sessions,
        running: running.length,
        mostlyFinished: mostlyFinished.length,
        finishedOnly: finishedOnly.length,
        finishedWithHoles: finishedWithHoles.length,
      };
    });
    console.table(rows);
    const thousand = rows[3]!;
    expect(thousand.running).toBeLessThan(8 * 1024);
    expect(thousand.mostlyFinished).toBeLessThan(1024);
    expect(thousand.finishedOnly).toBeLessThan(200);
    expect(thousand.finishedWithHoles).toBeLessThan(200);
    expect(rows[0]!.running).toBeLessThan(20);
  });
});
