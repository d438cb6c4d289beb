/**
 * The connection cursor: the `id:` of every session event on a multiplexed connection, sent back by
 * the browser as Last-Event-ID. For each session index it says one of: nothing yet (replay from the
 * beginning), the position of the last event received, or finished (never replay).
 *
 * Text: "1" (the layout version) followed by the unpadded base64url of this payload. Every number is
 * an unsigned LEB128 varint of at most 8 bytes and at most 2^53 - 1 (ms goes up to 2^48, so the
 * codec uses multiplication and division, never 32-bit bitwise operators, on the values).
 *
 *   count                        number of positioned sessions
 *   baseMs                       only when count > 0: the smallest ms among them
 *   count × entry, by ascending index:
 *     indexGap                   the first: its index; then index - previousIndex - 1 (dense → 0)
 *     msDelta * 2 + hasSeq       msDelta = ms - baseMs; the low bit says whether a seq follows,
 *     seq                        which is only written when not 0 (Redis auto ids mostly end in -0)
 *   finishedMode                 0: none finished, nothing follows
 *                                1: bitmap: byteLength, then the bytes; bit (i % 8) of byte
 *                                   floor(i / 8) set means index i finished; the last byte is non-zero
 *                                2: runs: runCount, then runCount × (gap, length - 1), runs maximal
 *                                   and ascending; the first gap is the first index of the first run,
 *                                   later gaps are (absent indexes between two runs) - 1
 *
 * The encoder writes whichever of bitmap and runs is shorter (the bitmap on a tie): dense small
 * indexes favour the bitmap, contiguous ranges and sparse huge indexes (up to 2^31) favour runs.
 * Decoded positions are canonical (`formatPosition`); an index is never both positioned and finished.
 */
import { Buffer } from "node:buffer";
import { formatPosition } from "../store/positions.js";

const VERSION = "1";
const MAX_VARINT_BYTES = 8;
/** `parsePosition` accepts at most 15 digits per part; decoded positions must parse again. */
const MAX_POSITION_PART = 999_999_999_999_999;
const POSITION_PART_DIGITS = 15;
const FINISHED_NONE = 0;
const FINISHED_BITMAP = 1;
const FINISHED_RUNS = 2;
const BASE64URL_CHARS = /^[A-Za-z0-9_-]*$/;
const INITIAL_CAPACITY_BYTES = 256;

export class CursorError extends Error {
  readonly code = "invalid_cursor";
  override readonly name = "CursorError";
  constructor(message: string) {
    super(`invalid cursor: ${message}`);
  }
}

/** An index is never in both. */
export interface CursorEntries {
  positions: Map<number, string>;
  finished: Set<number>;
}

/** Bounds against hostile Last-Event-ID values; `maxEntries` counts positioned plus finished. */
export interface CursorLimits {
  maxIndex: number;
  maxEntries: number;
  maxLength: number;
}

export type CursorState = { kind: "none" } | { kind: "at"; position: string } | { kind: "finished" };

const NONE: CursorState = Object.freeze({ kind: "none" });
const FINISHED: CursorState = Object.freeze({ kind: "finished" });

export function encodeCursor(entries: CursorEntries): string {
  const rows: Array<[number, number, number]> = [];
  for (const [index, position] of entries.positions) {
    assertIndex(index);
    if (entries.finished.has(index)) throw new RangeError(`cursor index ${index} is positioned and finished`);
    parsePositionInto(position, parsed, 0);
    rows.push([index, parsed[0]!, parsed[1]!]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  const writer = new ByteWriter();
  writePositioned(writer, rows.flat());
  writer.append(encodeFinished(sortedFinished(entries.finished)));
  return writer.toCursor();
}

export function decodeCursor(text: string, limits: CursorLimits): CursorEntries {
  if (text.length > limits.maxLength) throw new CursorError(`longer than ${limits.maxLength} characters`);
  if (text.length === 0) throw new CursorError("empty");
  if (text[0] !== VERSION) throw new CursorError(`unknown version ${JSON.stringify(text[0])}`);
  const body = text.slice(1);
  if (!BASE64URL_CHARS.test(body)) throw new CursorError("characters outside [A-Za-z0-9_-]");
  const bytes = Buffer.from(body, "base64url");
  // Buffer decoding is lenient (a dangling 4k+1th character, stray low bits): only accept what it would write.
  if (bytes.toString("base64url") !== body) throw new CursorError("malformed base64url");

  const reader = new ByteReader(bytes);
  const positions = new Map<number, string>();
  const finished = new Set<number>();
  const count = reader.varint();
  if (count > limits.maxEntries) throw tooMany(limits);
  if (count > 0) {
    const baseMs = reader.varint();
    if (baseMs > MAX_POSITION_PART) throw new CursorError("position ms beyond 15 digits");
    let next = 0;
    for (let k = 0; k < count; k++) {
      const index = nextIndex(next, reader.varint(), limits);
      const msField = reader.varint();
      const hasSeq = msField % 2 === 1;
      const msDelta = (msField - (hasSeq ? 1 : 0)) / 2;
      if (msDelta > MAX_POSITION_PART - baseMs) throw new CursorError("position ms beyond 15 digits");
      const seq = hasSeq ? reader.varint() : 0;
      if (seq > MAX_POSITION_PART) throw new CursorError("position seq beyond 15 digits");
      positions.set(index, formatPosition({ ms: baseMs + msDelta, seq }));
      next = index + 1;
    }
  }

  const addFinished = (index: number): void => {
    if (positions.has(index)) throw new CursorError(`index ${index} both positioned and finished`);
    if (positions.size + finished.size >= limits.maxEntries) throw tooMany(limits);
    finished.add(index);
  };
  const mode = reader.varint();
  if (mode === FINISHED_BITMAP) {
    const byteLength = reader.varint();
    const start = reader.take(byteLength);
    if (byteLength === 0 || bytes[start + byteLength - 1] === 0) throw new CursorError("untrimmed bitmap");
    for (let byteIndex = 0; byteIndex < byteLength; byteIndex++) {
      const byte = bytes[start + byteIndex]!;
      for (let bit = 0; bit < 8; bit++) {
        if ((byte & (1 << bit)) === 0) continue;
        const index = byteIndex * 8 + bit;
        if (index > limits.maxIndex) throw indexTooLarge(index, limits);
        addFinished(index);
      }
    }
  } else if (mode === FINISHED_RUNS) {
    const runCount = reader.varint();
    if (runCount === 0) throw new CursorError("empty run list");
    let next = 0;
    for (let run = 0; run < runCount; run++) {
      const first = nextIndex(next, reader.varint(), limits);
      const last = nextIndex(first, reader.varint(), limits);
      // Check the whole run before expanding it: a run can claim billions of indexes in a few bytes.
      if (last - first + 1 > limits.maxEntries - positions.size - finished.size) throw tooMany(limits);
      for (let index = first; index <= last; index++) addFinished(index);
      next = last + 2;
    }
  } else if (mode !== FINISHED_NONE) {
    throw new CursorError(`unknown finished-set encoding ${mode}`);
  }
  if (!reader.done()) throw new CursorError("trailing bytes");
  return { positions, finished };
}

/**
 * The cursor of one connection, updated as events are sent. `encode()` runs once per event sent: it
 * reuses its last result until something changes, keeps the finished section (which changes rarely)
 * encoded, and writes into one growing buffer without allocating per entry.
 *
 * A tracker lives as long as its connection, so its state is a few flat arrays (no object, map or
 * set entry per session): positioned sessions by ascending index in `slots` as (index, ms, seq)
 * triples, which V8 keeps as unboxed doubles, with the position texts alongside.
 */
export class CursorTracker {
  /** (index, ms, seq) per positioned session, by ascending index. */
  private readonly slots: number[] = [];
  /** The position text of each triple in `slots`. */
  private readonly positions: string[] = [];
  /** Finished indexes, ascending. */
  private readonly finished: number[] = [];
  /** null when stale. */
  private finishedSection: Uint8Array | null = null;
  /** null when stale. */
  private encoded: string | null = null;

  constructor(initial?: CursorEntries) {
    if (!initial) return;
    for (const [index, position] of initial.positions) {
      if (initial.finished.has(index))
        throw new RangeError(`cursor index ${index} is positioned and finished`);
      this.setPosition(index, position);
    }
    for (const index of initial.finished) this.markFinished(index);
  }

  get size(): number {
    return this.positions.length + this.finished.length;
  }

  /** The client received the event at `position`. A finished session that streams again is positioned again. */
  setPosition(index: number, position: string): void {
    const slot = search(this.slots, SLOT_STRIDE, index);
    if (slot >= 0) {
      if (this.positions[slot] === position) return;
      parsePositionInto(position, this.slots, slot * SLOT_STRIDE + 1);
      this.positions[slot] = position;
      this.encoded = null;
      return;
    }
    assertIndex(index);
    parsePositionInto(position, parsed, 0);
    const finishedAt = search(this.finished, 1, index);
    if (finishedAt >= 0) {
      this.finished.splice(finishedAt, 1);
      this.finishedSection = null;
    }
    const at = ~slot;
    this.slots.splice(at * SLOT_STRIDE, 0, index, parsed[0]!, parsed[1]!);
    this.positions.splice(at, 0, position);
    this.encoded = null;
  }

  /** The client received the session's terminal event: it is never replayed. */
  markFinished(index: number): void {
    const at = search(this.finished, 1, index);
    if (at >= 0) return;
    assertIndex(index);
    this.removePositioned(index);
    this.finished.splice(~at, 0, index);
    this.finishedSection = null;
    this.encoded = null;
  }

  /** The session left the connection. */
  forget(index: number): void {
    this.removePositioned(index);
    const at = search(this.finished, 1, index);
    if (at >= 0) {
      this.finished.splice(at, 1);
      this.finishedSection = null;
      this.encoded = null;
    }
  }

  get(index: number): CursorState {
    const slot = search(this.slots, SLOT_STRIDE, index);
    if (slot >= 0) return { kind: "at", position: this.positions[slot]! };
    return search(this.finished, 1, index) >= 0 ? FINISHED : NONE;
  }

  /** A copy of the current state. */
  toEntries(): CursorEntries {
    const positions = new Map<number, string>();
    for (let k = 0; k < this.positions.length; k++)
      positions.set(this.slots[k * SLOT_STRIDE]!, this.positions[k]!);
    return { positions, finished: new Set(this.finished) };
  }

  encode(): string {
    if (this.encoded !== null) return this.encoded;
    if (this.finishedSection === null) this.finishedSection = encodeFinished(this.finished);
    // Encoding is synchronous, so every tracker shares one scratch buffer: nothing per connection.
    const writer = scratchWriter;
    writer.reset();
    writePositioned(writer, this.slots);
    writer.append(this.finishedSection);
    this.encoded = writer.toCursor();
    return this.encoded;
  }

  private removePositioned(index: number): void {
    const slot = search(this.slots, SLOT_STRIDE, index);
    if (slot < 0) return;
    this.slots.splice(slot * SLOT_STRIDE, SLOT_STRIDE);
    this.positions.splice(slot, 1);
    this.encoded = null;
  }
}

const SLOT_STRIDE = 3;
/** Scratch (ms, seq) for a position being parsed. */
const parsed: number[] = [0, 0];

/**
 * The record (of `stride` numbers, keyed by its first) holding `key` in `values`, ascending by key;
 * else `~insertionPoint`. Appending in order (a decoded cursor) needs one comparison.
 */
function search(values: readonly number[], stride: number, key: number): number {
  const count = values.length / stride;
  if (count === 0 || values[(count - 1) * stride]! < key) return ~count;
  let low = 0;
  let high = count;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (values[middle * stride]! < key) low = middle + 1;
    else high = middle;
  }
  return low < count && values[low * stride] === key ? low : ~low;
}

/** Positioned (index, ms, seq) triples by ascending index. */
function writePositioned(writer: ByteWriter, slots: readonly number[]): void {
  const count = slots.length / SLOT_STRIDE;
  writer.varint(count);
  if (count === 0) return;
  let baseMs = slots[1]!;
  for (let k = 1; k < count; k++) baseMs = Math.min(baseMs, slots[k * SLOT_STRIDE + 1]!);
  writer.varint(baseMs);
  let next = 0;
  for (let k = 0; k < slots.length; k += SLOT_STRIDE) {
    const index = slots[k]!;
    const seq = slots[k + 2]!;
    writer.varint(index - next);
    next = index + 1;
    const msField = (slots[k + 1]! - baseMs) * 2;
    if (seq === 0) {
      writer.varint(msField);
    } else {
      writer.varint(msField + 1);
      writer.varint(seq);
    }
  }
}

/** The finished section for ascending, distinct indexes: the shorter of bitmap and runs. */
function encodeFinished(sorted: readonly number[]): Uint8Array {
  const writer = new ByteWriter();
  const last = sorted[sorted.length - 1];
  if (last === undefined) {
    writer.varint(FINISHED_NONE);
    return writer.copy();
  }
  // Flat [first, last, first, last, ...] of maximal runs.
  const runs: number[] = [];
  for (const index of sorted) {
    if (runs.length > 0 && runs[runs.length - 1] === index - 1) runs[runs.length - 1] = index;
    else runs.push(index, index);
  }
  let runsBytes = varintLength(runs.length / 2);
  let next = 0;
  for (let k = 0; k < runs.length; k += 2) {
    runsBytes += varintLength(runs[k]! - next) + varintLength(runs[k + 1]! - runs[k]!);
    next = runs[k + 1]! + 2;
  }
  const bitmapLength = Math.floor(last / 8) + 1;
  if (varintLength(bitmapLength) + bitmapLength <= runsBytes) {
    const bitmap = new Uint8Array(bitmapLength);
    for (const index of sorted) bitmap[Math.floor(index / 8)]! |= 1 << (index % 8);
    writer.varint(FINISHED_BITMAP);
    writer.varint(bitmapLength);
    writer.append(bitmap);
  } else {
    writer.varint(FINISHED_RUNS);
    writer.varint(runs.length / 2);
    next = 0;
    for (let k = 0; k < runs.length; k += 2) {
      writer.varint(runs[k]! - next);
      writer.varint(runs[k + 1]! - runs[k]!);
      next = runs[k + 1]! + 2;
    }
  }
  return writer.copy();
}

function sortedFinished(finished: ReadonlySet<number>): number[] {
  const sorted = [...finished];
  for (const index of sorted) assertIndex(index);
  return sorted.sort((a, b) => a - b);
}

function assertIndex(index: number): void {
  if (!Number.isSafeInteger(index) || index < 0)
    throw new RangeError(`cursor index ${index} is not a natural number`);
}

/**
 * Parses `<ms>-<seq>` exactly as `parsePosition` does into `into[at]` and `into[at + 1]`, without
 * allocating (it runs once per event).
 */
function parsePositionInto(position: string, into: number[], at: number): void {
  const dash = position.indexOf("-");
  const ms = parseDigits(position, 0, dash);
  const seq = parseDigits(position, dash + 1, position.length);
  if (dash < 0 || ms < 0 || seq < 0)
    throw new TypeError(`not a stream position: ${JSON.stringify(position)}`);
  into[at] = ms;
  into[at + 1] = seq;
}

/** The value of 1 to 15 decimal digits in text[start, end), or -1. */
function parseDigits(text: string, start: number, end: number): number {
  if (end <= start || end - start > POSITION_PART_DIGITS) return -1;
  let value = 0;
  for (let k = start; k < end; k++) {
    const digit = text.charCodeAt(k) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

function nextIndex(next: number, gap: number, limits: CursorLimits): number {
  if (gap > limits.maxIndex - next) throw indexTooLarge(next + gap, limits);
  return next + gap;
}

function indexTooLarge(index: number, limits: CursorLimits): CursorError {
  return new CursorError(`index ${index} above ${limits.maxIndex}`);
}

function tooMany(limits: CursorLimits): CursorError {
  return new CursorError(`more than ${limits.maxEntries} entries`);
}

function varintLength(value: number): number {
  let length = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) length++;
  return length;
}

class ByteWriter {
  private bytes = Buffer.allocUnsafe(INITIAL_CAPACITY_BYTES);
  private length = 0;

  reset(): void {
    this.length = 0;
  }

  varint(value: number): void {
    this.reserve(MAX_VARINT_BYTES);
    let rest = value;
    while (rest >= 0x80) {
      this.bytes[this.length++] = (rest % 0x80) + 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.bytes[this.length++] = rest;
  }

  append(section: Uint8Array): void {
    this.reserve(section.length);
    this.bytes.set(section, this.length);
    this.length += section.length;
  }

  copy(): Uint8Array {
    return Uint8Array.prototype.slice.call(this.bytes, 0, this.length);
  }

  toCursor(): string {
    return VERSION + this.bytes.toString("base64url", 0, this.length);
  }

  private reserve(extra: number): void {
    const needed = this.length + extra;
    if (needed <= this.bytes.length) return;
    let capacity = this.bytes.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = Buffer.allocUnsafe(capacity);
    this.bytes.copy(grown, 0, 0, this.length);
    this.bytes = grown;
  }
}

class ByteReader {
  private offset = 0;

  constructor(private readonly bytes: Uint8Array) {}

  done(): boolean {
    return this.offset === this.bytes.length;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let k = 0; k < MAX_VARINT_BYTES; k++) {
      const byte = this.bytes[this.offset++];
      if (byte === undefined) throw new CursorError("truncated");
      const part = (byte & 0x7f) * scale;
      if (part > Number.MAX_SAFE_INTEGER - value) throw new CursorError("number beyond 2^53");
      value += part;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    throw new CursorError(`number longer than ${MAX_VARINT_BYTES} bytes`);
  }

  /** Skips `length` bytes and returns where they start. */
  take(length: number): number {
    if (length > this.bytes.length - this.offset) throw new CursorError("truncated");
    const start = this.offset;
    this.offset += length;
    return start;
  }
}

const scratchWriter = new ByteWriter();
