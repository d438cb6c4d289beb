/** Per-test key isolation on the shared redis-server. */
import { randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const PREFIX_RANDOM_CHARS = 8;

/** A fresh key prefix such as `t:k3v9x0qa:`; give each test its own so tests never see each other's keys. */
export function randomPrefix(): string {
  const bytes = randomBytes(PREFIX_RANDOM_CHARS);
  let random = "";
  for (const byte of bytes) random += ALPHABET[byte % ALPHABET.length];
  return `t:${random}:`;
}
