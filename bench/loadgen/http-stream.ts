/**
 * One SSE response read straight off a TCP socket: the request written by hand, the response head
 * parsed once, the body de-chunked here. Node's HTTP client costs the load generator about as much
 * per socket read as the reading itself (the parser's callbacks, a Readable stream and an event per
 * chunk), and a load generator must stay cheaper per event than the servers it measures. Handles what
 * every server under test sends: `Transfer-Encoding: chunked`, or a body that runs until the
 * connection closes.
 */
import net from "node:net";

/** A response head larger than this is not one of the servers under test. */
const MAX_HEAD_BYTES = 64 * 1024;
const CR = 13;
const LF = 10;

export interface StreamHandlers {
  /** Body bytes [start, end) of `buffer` (after de-chunking), in order. */
  onBody(buffer: Buffer, start: number, end: number): void;
  /** One HTTP chunk began (or, unchunked, one read): counted like the client's 'data' events. */
  onChunk(): void;
  /** The connection failed after it opened (a socket error, or a body that breaks HTTP's framing). */
  onError(error: Error): void;
  /** The connection is gone: closed by the server (or failed) unless `close()` was called. */
  onClose(byServer: boolean): void;
}

export interface OpenedStream {
  close(): void;
}

enum Body {
  /** Reading a chunk-size line (hex digits, maybe `;extensions`, then CRLF). */
  Size,
  /** Inside a chunk's data. */
  Data,
  /** The CRLF after a chunk's data. */
  DataEnd,
  /** Unchunked: everything until the connection closes. */
  Raw,
  /** The last chunk came: the response is complete. */
  Done,
}

/**
 * Opens `GET path` and resolves once a 200 head arrived (with the time it took); rejects on another
 * status (with the start of its body), an error, or no head within `timeoutMs`.
 */
export function openStream(
  host: string,
  port: number,
  path: string,
  timeoutMs: number,
  handlers: StreamHandlers,
): Promise<OpenedStream> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    let head: Buffer | null = Buffer.alloc(0);
    let state = Body.Raw;
    let size = 0;
    let sawSizeDigit = false;
    let inExtension = false;
    let remaining = 0;
    let crlfSeen = 0;
    let settled = false;
    let closing = false;
    let failure: Error | null = null;

    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(error);
    };

    socket.setTimeout(timeoutMs, () => fail(new Error(`no response within ${timeoutMs} ms`)));
    socket.on("connect", () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: text/event-stream\r\nConnection: keep-alive\r\n\r\n`,
      );
    });
    socket.on("error", (error) => {
      failure = error;
      if (settled && !closing) handlers.onError(error);
      fail(error);
    });
    socket.on("close", () => {
      if (!settled) fail(failure ?? new Error("connection closed before a response"));
      else handlers.onClose(!closing);
    });

    const body = (buffer: Buffer, from: number) => {
      let i = from;
      const length = buffer.length;
      while (i < length) {
        switch (state) {
          case Body.Raw:
            handlers.onChunk();
            handlers.onBody(buffer, i, length);
            return;
          case Body.Data: {
            const end = Math.min(length, i + remaining);
            handlers.onBody(buffer, i, end);
            remaining -= end - i;
            i = end;
            if (remaining === 0) {
              state = Body.DataEnd;
              crlfSeen = 0;
            }
            break;
          }
          case Body.DataEnd:
            // CRLF after the data, possibly split across reads.
            if (buffer[i] === (crlfSeen === 0 ? CR : LF)) crlfSeen++;
            else throw new Error(`chunked body: expected CRLF after a chunk, got byte ${buffer[i]}`);
            i++;
            if (crlfSeen === 2) {
              state = Body.Size;
              size = 0;
              sawSizeDigit = false;
              inExtension = false;
            }
            break;
          case Body.Size: {
            const c = buffer[i]!;
            i++;
            if (c === LF) {
              if (!sawSizeDigit) throw new Error("chunked body: a chunk-size line without digits");
              if (size === 0) {
                state = Body.Done;
                socket.end();
                return;
              }
              state = Body.Data;
              remaining = size;
              handlers.onChunk();
            } else if (c === CR || inExtension) {
              // the line's end, or a chunk extension (ignored)
            } else if (c === 59) {
              inExtension = true; // ;
            } else {
              const digit = c <= 57 ? c - 48 : (c | 32) - 87;
              if (!(c >= 48 && digit >= 0 && digit < 16))
                throw new Error(`chunked body: bad chunk-size byte ${c}`);
              size = size * 16 + digit;
              sawSizeDigit = true;
            }
            break;
          }
          case Body.Done:
            return;
        }
      }
    };

    socket.on("data", (buffer: Buffer) => {
      try {
        if (head === null) {
          body(buffer, 0);
          return;
        }
        head = head.length === 0 ? buffer : Buffer.concat([head, buffer]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) {
          if (head.length > MAX_HEAD_BYTES) fail(new Error("response head too large"));
          return;
        }
        const text = head.toString("latin1", 0, end);
        const rest = head;
        head = null;
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
        if (status !== 200) {
          // The start of the refusal's body, for the error message; the socket is not kept.
          fail(new Error(`HTTP ${status} ${rest.toString("utf8", end + 4, end + 4 + 200)}`));
          return;
        }
        state = /\r\ntransfer-encoding:[ \t]*chunked/i.test(text) ? Body.Size : Body.Raw;
        settled = true;
        socket.setTimeout(0);
        resolve({
          close() {
            closing = true;
            socket.destroy();
          },
        });
        if (rest.length > end + 4) body(rest, end + 4);
      } catch (error) {
        // A broken body: count it as the server's doing and drop the connection.
        failure = error as Error;
        if (!settled) fail(failure);
        else socket.destroy(failure);
      }
    });
  });
}
