/**
 * Redis Cluster's key → slot mapping (CRC16-XMODEM of the hash tag, or of the whole name, mod 16384),
 * for the names the gateway routes itself: shard channels, which it subscribes to on the connection
 * of the shard that owns their slot.
 */
export const SLOT_COUNT = 16_384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[byte] = crc;
  }
  return table;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

/** The part Redis hashes: what is between the first `{` and the next `}`, when that is not empty. */
function hashedPart(name: string): string {
  const open = name.indexOf("{");
  if (open < 0) return name;
  const close = name.indexOf("}", open + 1);
  if (close <= open + 1) return name;
  return name.slice(open + 1, close);
}

/** The slot of a key or shard channel, as `CLUSTER KEYSLOT` answers it. */
export function keySlot(name: string): number {
  return crc16(Buffer.from(hashedPart(name), "utf8")) % SLOT_COUNT;
}
