/**
 * Random ids (session ids, request records, connection and instance ids): `bytes` bytes of the
 * system's CSPRNG as base64url. The bytes are drawn 4 KiB at a time and each is used once: a draw
 * per id (`randomBytes`) costs about 5 µs, several per run on the way to its first token; this costs
 * a slice. The same scheme as `crypto.randomUUID`'s cache.
 */
import { randomFillSync } from "node:crypto";

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let next = POOL_BYTES;

export function randomId(bytes: number): string {
  if (bytes > POOL_BYTES) throw new RangeError(`randomId: at most ${POOL_BYTES} bytes`);
  if (next + bytes > POOL_BYTES) {
    randomFillSync(pool);
    next = 0;
  }
  const id = pool.toString("base64url", next, next + bytes);
  next += bytes;
  return id;
}
