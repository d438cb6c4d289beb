/**
 * A reader's one state and its transitions, and the position rule by which it takes what the hub
 * pushes: against a fake connection that records what the reader asks of it.
 */
import { describe, expect, it } from "vitest";
import { continuesAt, MISSED } from "../../src/hub/reader.js";
import { type ReaderOwner, type ReaderState, SessionReader } from "../../src/mux/session-reader.js";
import type { StoredEvent } from "../../src/store/types.js";

const event = (id: string): StoredEvent => ({ id, type: "token", data: '{"content":"x"}' });
const batch = (...ids: string[]) => ids.map(event);

class FakeOwner implements ReaderOwner {
  writable = true;
  readonly calls: string[] = [];
  canTakeLive(): boolean {
    return this.writable;
  }
  deliverLive(reader: SessionReader, events: readonly StoredEvent[]): void {
    this.calls.push(`deliver ${events.map((each) => each.id).join(",")}`);
    reader.position = events.at(-1)!.id;
  }
  catchUp(): void {
    this.calls.push("catchUp");
  }
  readMayMiss(): void {
    this.calls.push("readMayMiss");
  }
  incarnationEnded(reader: SessionReader): void {
    this.calls.push("incarnationEnded");
    reader.close();
  }
}

/** A reader at `position` brought to `state` through its transitions. */
function readerIn(state: ReaderState, position: string | null = "5-0") {
  const owner = new FakeOwner();
  const reader = new SessionReader(
    "s",
    0,
    state === "resuming" ? position : null,
    owner,
    null,
    state === "live",
  );
  reader.position = position;
  if (state === "reading") reader.startRead();
  if (state === "closed") reader.close();
  expect(reader.state).toBe(state);
  return { reader, owner };
}

describe("continuesAt", () => {
  it("0 when the batch follows the reader exactly, also for a stream's first batch", () => {
    expect(continuesAt("5-0", "5-0", batch("6-0"))).toBe(0);
    expect(continuesAt(null, "", batch("1-0"))).toBe(0);
  });

  it("the count of events the reader has when it holds part of the batch, or all of it", () => {
    expect(continuesAt("6-0", "5-0", batch("6-0", "6-1", "7-0"))).toBe(1);
    expect(continuesAt("6-1", "5-0", batch("6-0", "6-1", "7-0"))).toBe(2);
    expect(continuesAt("7-0", "5-0", batch("6-0", "6-1", "7-0"))).toBe(3);
    expect(continuesAt("9-0", "5-0", batch("6-0", "6-1", "7-0"))).toBe(3);
    expect(continuesAt("1-0", "", batch("1-0", "2-0"))).toBe(1);
  });

  it("MISSED when the reader is before the batch, or has nothing and the batch is not the first", () => {
    expect(continuesAt("4-0", "5-0", batch("6-0"))).toBe(MISSED);
    expect(continuesAt("5-0", "5-1", batch("6-0"))).toBe(MISSED);
    expect(continuesAt(null, "5-0", batch("6-0"))).toBe(MISSED);
  });
});

describe("a reader's state", () => {
  it("starts resuming at a position, behind from the beginning, live for a session its request creates", () => {
    const owner = new FakeOwner();
    expect(new SessionReader("s", 0, "1-0", owner, null).state).toBe("resuming");
    expect(new SessionReader("s", 0, null, owner, null).state).toBe("behind");
    expect(new SessionReader("s", 0, null, owner, null, true).state).toBe("live");
  });

  const transitions: Record<string, (reader: SessionReader) => void> = {
    startRead: (reader) => reader.startRead(),
    caughtUp: (reader) => reader.caughtUp(),
    owesMore: (reader) => reader.owesMore(),
    "readFailed(first)": (reader) => reader.readFailed(true),
    "readFailed(later)": (reader) => reader.readFailed(false),
    fallBehind: (reader) => reader.fallBehind(),
    close: (reader) => reader.close(),
  };
  /** Every transition from every state; a transition a state does not leave by changes nothing. */
  const table: Record<ReaderState, Record<string, ReaderState>> = {
    resuming: { startRead: "reading", close: "closed" },
    behind: { startRead: "reading", close: "closed" },
    reading: {
      caughtUp: "live",
      owesMore: "behind",
      "readFailed(first)": "resuming",
      "readFailed(later)": "behind",
      close: "closed",
    },
    live: { fallBehind: "behind", close: "closed" },
    closed: {},
  };
  for (const [from, moves] of Object.entries(table) as Array<[ReaderState, Record<string, ReaderState>]>) {
    for (const [name, apply] of Object.entries(transitions)) {
      const to = moves[name] ?? from;
      it(`${from} --${name}--> ${to}`, () => {
        const { reader } = readerIn(from);
        apply(reader);
        expect(reader.state).toBe(to);
      });
    }
  }

  it("startRead says whether the read is the first from a resume point (it checks for a gap)", () => {
    expect(readerIn("resuming").reader.startRead()).toBe(true);
    expect(readerIn("behind").reader.startRead()).toBe(false);
  });
});

describe("what the hub pushes to a reader", () => {
  it("a live reader takes a batch that follows it, and only the rest of one it has part of", () => {
    const { reader, owner } = readerIn("live");
    expect(reader.push("5-0", batch("6-0", "6-1"))).toBe(true);
    expect(reader.push("5-0", batch("6-0", "6-1", "7-0"))).toBe(false);
    expect(reader.push("5-0", batch("6-0"))).toBe(false);
    expect(owner.calls).toEqual(["deliver 6-0,6-1", "deliver 7-0"]);
    expect(reader.state).toBe("live");
  });

  it("a live reader that missed a batch, or whose socket is full, falls behind and asks once to catch up", () => {
    const missed = readerIn("live");
    expect(missed.reader.push("5-1", batch("6-0"))).toBe(false);
    expect(missed.reader.push("6-0", batch("7-0"))).toBe(false);
    expect(missed.reader.state).toBe("behind");
    expect(missed.owner.calls).toEqual(["catchUp"]);

    const full = readerIn("live");
    full.owner.writable = false;
    full.reader.push("5-0", batch("6-0"));
    full.reader.push("6-0", batch("7-0"));
    expect(full.reader.state).toBe("behind");
    expect(full.owner.calls).toEqual(["catchUp"]);
  });

  it("a reading reader's pending read is told it may miss the batch; behind, resuming and closed ones ignore it", () => {
    const reading = readerIn("reading");
    expect(reading.reader.push("5-0", batch("6-0"))).toBe(false);
    expect(reading.owner.calls).toEqual(["readMayMiss"]);
    expect(reading.reader.state).toBe("reading");
    for (const state of ["behind", "resuming", "closed"] as const) {
      const { reader, owner } = readerIn(state);
      expect(reader.push("5-0", batch("6-0"))).toBe(false);
      expect(owner.calls).toEqual([]);
      expect(reader.state).toBe(state);
    }
  });

  it("a resync sends a live reader behind and marks a reading one's read; the others stay", () => {
    const live = readerIn("live");
    live.reader.resync();
    expect(live.reader.state).toBe("behind");
    expect(live.owner.calls).toEqual(["catchUp"]);
    const reading = readerIn("reading");
    reading.reader.resync();
    expect(reading.owner.calls).toEqual(["readMayMiss"]);
    for (const state of ["behind", "resuming", "closed"] as const) {
      const { reader, owner } = readerIn(state);
      reader.resync();
      expect(reader.state).toBe(state);
      expect(owner.calls).toEqual([]);
    }
  });
});

describe("a reader bound to the incarnation it was authorised for", () => {
  const bound = (state: "live" | "reading", incarnation: number | null) => {
    const owner = new FakeOwner();
    const reader = new SessionReader("s", 0, null, owner, null, true, incarnation);
    reader.position = "5-0";
    if (state === "reading") {
      reader.fallBehind();
      reader.startRead();
      owner.calls.length = 0;
    }
    return { reader, owner };
  };

  it("takes its own incarnation's batches, and never another's: its owner ends it instead", () => {
    const { reader, owner } = bound("live", 1000);
    expect(reader.push("5-0", batch("6-0"), 1000)).toBe(true);
    expect(reader.push("6-0", batch("7-0"), 2000)).toBe(false);
    expect(owner.calls).toEqual(["deliver 6-0", "incarnationEnded"]);
    expect(reader.state).toBe("closed");
    // Even a batch that would follow its position (a new session's first batch, prevId "").
    const fresh = bound("reading", 1000);
    expect(fresh.reader.push("", batch("9-0"), 2000)).toBe(false);
    expect(fresh.owner.calls).toEqual(["incarnationEnded"]);
  });

  it("reads the store when a notice does not say its incarnation (an older instance sent it)", () => {
    const { reader, owner } = bound("live", 1000);
    expect(reader.push("5-0", batch("6-0"), null)).toBe(false);
    expect(owner.calls).toEqual(["catchUp"]);
    expect(reader.state).toBe("behind");
  });

  it("unbound (admin, a claim), it follows the id into any incarnation", () => {
    const { reader, owner } = bound("live", null);
    expect(reader.push("5-0", batch("6-0"), 1000)).toBe(true);
    expect(reader.push("6-0", batch("7-0"), 2000)).toBe(true);
    expect(owner.calls).toEqual(["deliver 6-0", "deliver 7-0"]);
  });
});
