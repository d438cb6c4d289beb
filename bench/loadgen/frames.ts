/**
 * A minimal SSE frame reader for the load generator: no allocation per line, one reusable result
 * object per connection. It reads only what the benchmark needs (event name, the data line's range,
 * the id's length) and assumes what all three servers send: `\n` line endings and one `data:` line
 * per frame. Text is decoded as latin1 (one char per byte), so offsets are byte offsets and a
 * multi-byte character split across chunks can never break a frame boundary.
 */

export interface FrameFields {
  /** `event:` value; "message" when absent. */
  name: string;
  /** The data line's value as [dataStart, dataEnd) of the text; -1 when there is none. */
  dataStart: number;
  dataEnd: number;
  /** Length of the `id:` value; -1 when absent. */
  idLength: number;
}

const CHAR_E = 101;
const CHAR_D = 100;
const CHAR_I = 105;
const CHAR_SPACE = 32;

export function newFrameFields(): FrameFields {
  return { name: "message", dataStart: -1, dataEnd: -1, idLength: -1 };
}

/** Fills `out` from the frame occupying [start, end) of `text` (end: the blank line's first `\n`). */
export function readFrame(text: string, start: number, end: number, out: FrameFields): void {
  out.name = "message";
  out.dataStart = -1;
  out.dataEnd = -1;
  out.idLength = -1;
  let lineStart = start;
  while (lineStart < end) {
    let lineEnd = text.indexOf("\n", lineStart);
    if (lineEnd < 0 || lineEnd > end) lineEnd = end;
    const first = text.charCodeAt(lineStart);
    if (first === CHAR_E && text.startsWith("event:", lineStart)) {
      const valueStart = lineStart + (text.charCodeAt(lineStart + 6) === CHAR_SPACE ? 7 : 6);
      out.name = text.slice(valueStart, lineEnd);
    } else if (first === CHAR_D && text.startsWith("data:", lineStart)) {
      out.dataStart = lineStart + (text.charCodeAt(lineStart + 5) === CHAR_SPACE ? 6 : 5);
      out.dataEnd = lineEnd;
    } else if (first === CHAR_I && text.startsWith("id:", lineStart)) {
      out.idLength = lineEnd - lineStart - (text.charCodeAt(lineStart + 3) === CHAR_SPACE ? 4 : 3);
    }
    lineStart = lineEnd + 1;
  }
}

/** The non-negative integer at `from` (digits only); -1 when there is none. */
export function readUint(text: string, from: number): number {
  let value = 0;
  let i = from;
  for (; ; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (!(digit >= 0 && digit <= 9)) break;
    value = value * 10 + digit;
  }
  return i === from ? -1 : value;
}

export interface TokenFields {
  seq: number;
  t: number;
  /** The publish stamp (`"p"`, on traced appends only); -1 when absent. */
  p: number;
}

/**
 * `seq`, `t` (and `p` when it follows) of a token's data `{"content":…,"seq":N,"t":T[,"p":P]}` within
 * [dataStart, dataEnd); false when the shape differs (then the caller falls back to JSON.parse).
 */
export function readToken(text: string, dataStart: number, dataEnd: number, out: TokenFields): boolean {
  const seqAt = text.indexOf('"seq":', dataStart);
  if (seqAt < 0 || seqAt >= dataEnd) return false;
  out.seq = readUint(text, seqAt + 6);
  const tAt = text.indexOf('"t":', seqAt);
  if (out.seq < 0 || tAt < 0 || tAt >= dataEnd) return false;
  let tEnd = tAt + 4;
  while (tEnd < dataEnd) {
    const c = text.charCodeAt(tEnd);
    if (c === 44 || c === 125) break; // , or }
    tEnd++;
  }
  out.t = Number(text.slice(tAt + 4, tEnd));
  out.p = -1;
  if (text.charCodeAt(tEnd) === 44 && text.startsWith('"p":', tEnd + 1)) {
    let pEnd = tEnd + 5;
    while (pEnd < dataEnd && text.charCodeAt(pEnd) !== 125) pEnd++;
    out.p = Number(text.slice(tEnd + 5, pEnd));
  }
  return Number.isFinite(out.t) && Number.isFinite(out.p);
}
