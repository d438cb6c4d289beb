import { Writable } from "node:stream";

/** A pino destination that keeps every JSON line it is given, parsed, in `lines`. */
export function logLines<T = Record<string, unknown>>(): { sink: Writable; lines: T[] } {
  const lines: T[] = [];
  let partial = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      for (const part of parts) if (part !== "") lines.push(JSON.parse(part) as T);
      done();
    },
  });
  return { sink, lines };
}
