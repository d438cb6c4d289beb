/** Stream positions are Redis stream entry ids, `<ms>-<seq>`; these compare them without allocating BigInts. */

export interface Position {
  ms: number;
  seq: number;
}

const POSITION_PATTERN = /^(\d{1,15})-(\d{1,15})$/;

export function parsePosition(id: string): Position | null {
  const match = POSITION_PATTERN.exec(id);
  if (!match) return null;
  const ms = Number(match[1]);
  const seq = Number(match[2]);
  if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(seq)) return null;
  return { ms, seq };
}

export function isPosition(id: string): boolean {
  return parsePosition(id) !== null;
}

/** Negative when a < b, 0 when equal, positive when a > b. Both must be valid positions. */
export function comparePositions(a: string, b: string): number {
  const dashA = a.indexOf("-");
  const dashB = b.indexOf("-");
  const msA = Number(a.slice(0, dashA));
  const msB = Number(b.slice(0, dashB));
  if (msA !== msB) return msA - msB;
  return Number(a.slice(dashA + 1)) - Number(b.slice(dashB + 1));
}

export function formatPosition(position: Position): string {
  return `${position.ms}-${position.seq}`;
}
