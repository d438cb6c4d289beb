/**
 * The hot codecs, each as the gateway runs it: per event sent on a multiplexed connection (a cursor
 * update and encode, then its frame), per resume (a cursor decode), per event written (frame bodies,
 * encoded once and shared by every connection), and per catch-up batch (token merging).
 */
import { bench, describe } from "vitest";
import { CursorTracker, decodeCursor, encodeCursor } from "../../src/mux/cursor.js";
import { mergeTokenRuns } from "../../src/mux/tokens.js";
import { idLine, muxBody, plainFrame, singleBody } from "../../src/sse/frames.js";
import type { StoredEvent } from "../../src/store/types.js";

const BASE_MS = 1_795_616_503_812;
const position = (k: number) => `${BASE_MS + (k >> 2)}-${k & 3}`;
const LIMITS = { maxIndex: 2 ** 31 - 1, maxEntries: 100_000, maxLength: 256 * 1024 };

/** A tracker of `sessions` running sessions, plus `finished` ended ones after them. */
function trackerWith(sessions: number, finished = 0): CursorTracker {
  const tracker = new CursorTracker();
  for (let index = 0; index < sessions; index++) tracker.setPosition(index, position(index * 7));
  for (let index = sessions; index < sessions + finished; index++) tracker.markFinished(index);
  return tracker;
}

describe("cursor: one event sent (setPosition + encode)", () => {
  for (const sessions of [1, 10, 100]) {
    const tracker = trackerWith(sessions, sessions);
    let k = 1_000;
    bench(`${sessions} running + ${sessions} finished sessions`, () => {
      tracker.setPosition(k % sessions, position(k++));
      tracker.encode();
    });
  }
});

describe("cursor: a resume (decode of Last-Event-ID)", () => {
  for (const sessions of [1, 10, 1_000]) {
    const text = trackerWith(sessions, sessions * 9).encode();
    bench(`${sessions} running + ${sessions * 9} finished (${text.length} chars)`, () => {
      decodeCursor(text, LIMITS);
    });
  }
  const entries = decodeCursor(trackerWith(100, 900).encode(), LIMITS);
  bench("encodeCursor of 100 running + 900 finished (from entries)", () => {
    encodeCursor(entries);
  });
});

const TOKEN_DATA = JSON.stringify({ content: " the" });

describe("frames: one event", () => {
  let k = 0;
  // A fresh event each time: the body is encoded once per event (then cached on it for every connection).
  bench("muxBody (first encoding)", () => {
    muxBody("EisVJP3xnmWDhS3nyI5MMg", { id: position(k++), type: "token", data: TOKEN_DATA });
  });
  bench("singleBody (first encoding)", () => {
    singleBody({ id: position(k++), type: "token", data: TOKEN_DATA });
  });
  const shared: StoredEvent = { id: position(1), type: "token", data: TOKEN_DATA };
  const cursor = trackerWith(10).encode();
  bench("idLine(cursor) + muxBody (cached): one connection's frame", () => {
    idLine(cursor) + muxBody("EisVJP3xnmWDhS3nyI5MMg", shared);
  });
  bench("plainFrame (a gap note)", () => {
    plainFrame("EisVJP3xnmWDhS3nyI5MMg:gap", { requested: position(3), oldest: position(900) });
  });
});

describe("tokens: a full catch-up batch (500 events)", () => {
  const tokens: StoredEvent[] = Array.from({ length: 500 }, (_, k) => ({
    id: position(k),
    type: "token",
    data: JSON.stringify({ content: ` word${k}` }),
  }));
  bench("mergeTokenRuns, all {content} tokens", () => {
    mergeTokenRuns(tokens);
  });
  const mixed = tokens.map((event, k) => (k % 10 === 9 ? { ...event, type: "usage" } : event));
  bench("mergeTokenRuns, a non-token every 10", () => {
    mergeTokenRuns(mixed);
  });
});
