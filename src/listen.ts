/** The HTTP server around the gateway's request listener: the one way it is served, by the entry point and the tests. */
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "./config.js";

export interface Listening {
  server: Server;
  /** The bound port (the configured one, or the one the system chose for port 0). */
  port: number;
}

export async function listen(
  listener: RequestListener,
  config: Pick<Config, "maxHeaderBytes">,
  port: number,
  host: string,
): Promise<Listening> {
  const server = createServer({ maxHeaderSize: config.maxHeaderBytes }, listener);
  // Above common load balancers' idle timeouts (60 s), so they close idle connections first.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  // Streams last for hours; a request's own deadlines are the routes' business.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
    server.listen(port, host);
  });
  return { server, port: (server.address() as AddressInfo).port };
}
