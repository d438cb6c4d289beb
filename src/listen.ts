/** The HTTP server around the gateway's request listener: the one way it is served, by the entry point and the tests. */
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { Config } from "./config.js";
import { ERROR_STATUS, type ErrorCode, errorBody } from "./errors.js";

export interface Listening {
  server: Server;
  /** The bound port (the configured one, or the one the system chose for port 0). */
  port: number;
}

/**
 * What Node answers itself, before the request reaches the gateway, as the gateway answers: JSON.
 * A request whose headers or body did not arrive in time (408), headers over MAX_HEADER_BYTES (431),
 * anything the parser refuses (400).
 */
function clientErrorAnswer(error: NodeJS.ErrnoException): string {
  const [code, message, reason]: [ErrorCode, string, string] =
    error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [
          "request_timeout",
          "the request did not arrive in time (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS)",
          "Request Timeout",
        ]
      : error.code === "HPE_HEADER_OVERFLOW"
        ? [
            "headers_too_large",
            "the request headers are larger than MAX_HEADER_BYTES",
            "Request Header Fields Too Large",
          ]
        : ["bad_request", "the request could not be parsed as HTTP", "Bad Request"];
  const body = JSON.stringify(errorBody(code, message));
  return (
    `HTTP/1.1 ${ERROR_STATUS[code]} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

export async function listen(
  listener: RequestListener,
  config: Pick<Config, "maxHeaderBytes" | "headersTimeoutMs" | "requestTimeoutMs">,
  port: number,
  host: string,
): Promise<Listening> {
  const server = createServer(
    {
      maxHeaderSize: config.maxHeaderBytes,
      // Headers, and a whole request with its body, must arrive within these: a client that sends
      // slowly holds a socket and its buffers only so long. A stream's request is complete as soon as
      // its headers are in (its response may last hours), so neither bound ever cuts a stream.
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      // How often Node looks for requests past those bounds (its default, 30 s, would let a slow request
      // live up to 30 s longer); only requests still arriving are looked at, not open streams.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(config.headersTimeoutMs / 4))),
    },
    listener,
  );
  // Above common load balancers' idle timeouts (60 s), so they close idle connections first.
  server.keepAliveTimeout = 65_000;
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node's own handler does: answer unless the response in flight on this socket has begun, then
    // close the socket (its request, if the gateway had it, sees the close).
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (error.code !== "ECONNRESET" && socket.writable && !inFlight?.headersSent) {
      socket.write(clientErrorAnswer(error));
    }
    socket.destroy(error);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
    server.listen(port, host);
  });
  return { server, port: (server.address() as AddressInfo).port };
}
