/** Free TCP ports on loopback, for servers that cannot listen on port 0 themselves (redis-server, child processes). */
import { createServer } from "node:net";

/**
 * Asks the OS for a free port on `host` (listen on port 0, read it, close).
 * Another process may grab it before the caller binds it; callers that spawn servers retry on EADDRINUSE.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`freePort: unexpected address ${String(address)}`));
        return;
      }
      const { port } = address;
      server.close((error) => (error ? reject(error) : resolve(port)));
    });
  });
}
