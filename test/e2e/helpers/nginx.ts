/**
 * The system nginx (Debian package) in front of gateway instances, with the project's own config:
 * nginx/render.mjs renders nginx/gateway.conf into a standalone nginx.conf (daemon off, everything under
 * a temp prefix dir) for a free loopback port. With `tls`, also the config's HTTPS + HTTP/2 listener on
 * a second port, with a self-signed certificate made by `openssl req -x509` for 127.0.0.1.
 * Stopped by pid (SIGQUIT, then SIGTERM, then SIGKILL).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectNginxVersion, renderNginxConf } from "../../../nginx/render.mjs";
import { freePort } from "../../helpers/index.js";
import { nginxBinary } from "./binaries.js";
import { httpGet, spawnManaged, waitUntil } from "./process.js";

const READY_TIMEOUT_MS = 15_000;
const START_ATTEMPTS = 3;
const LOG_TAIL_CHARS = 3_000;

export interface NginxHandle {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** `https://127.0.0.1:<port>` (HTTP/2 over TLS) when started with `tls`. */
  readonly httpsUrl: string | undefined;
  readonly pid: number;
  readonly prefix: string;
  /** error.log (and anything nginx printed). */
  logs(): string;
  /** The access log: one line per request, with the instance that served it. */
  accessLog(): string;
  stop(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1 and localhost, valid a day: `openssl req -x509`. */
export function makeTestCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const made = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { encoding: "utf8" },
  );
  if (made.status !== 0)
    throw new Error(`openssl req -x509 failed (${made.status}): ${made.stderr}${made.error ?? ""}`);
  return { cert, key };
}

export async function startNginx(opts: { upstreams: string[]; tls?: boolean }): Promise<NginxHandle> {
  const binary = nginxBinary();
  const prefix = mkdtempSync(join(tmpdir(), "sse-e2e-nginx-"));
  // When run as root, nginx's worker runs as `nobody` and must reach the prefix (temp files).
  chmodSync(prefix, 0o755);
  const confPath = join(prefix, "nginx.conf");
  const errorLog = join(prefix, "error.log");
  const read = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : "");
  // nginx's master reads the key as root before dropping privileges: no chmod needed.
  const certificate = opts.tls ? makeTestCertificate(prefix) : undefined;
  // Before 1.25.1 (Debian 12 ships 1.22.1) HTTP/2 is `listen ... ssl http2`; render.mjs writes either.
  const nginxVersion = opts.tls ? detectNginxVersion(binary) : undefined;

  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = await freePort();
    let tlsPort = certificate ? await freePort() : undefined;
    while (tlsPort === port) tlsPort = await freePort();
    writeFileSync(
      confPath,
      renderNginxConf({
        listen: `127.0.0.1:${port}`,
        upstreams: opts.upstreams,
        prefix,
        ...(certificate && tlsPort !== undefined
          ? {
              tls: { ...certificate, listen: `127.0.0.1:${tlsPort}` },
              ...(nginxVersion ? { nginxVersion } : {}),
            }
          : {}),
      }),
    );
    if (attempt === 1) {
      const test = spawnSync(binary, ["-t", "-q", "-c", confPath, "-p", prefix, "-e", errorLog], {
        encoding: "utf8",
      });
      if (test.status !== 0) {
        rmSync(prefix, { recursive: true, force: true });
        throw new Error(`nginx -t rejected the rendered config:\n${test.stderr}${test.stdout}`);
      }
    }
    const proc = spawnManaged(binary, ["-c", confPath, "-p", prefix, "-e", errorLog]);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntil(
        async () => {
          if (proc.hasExited()) throw new Error("exited");
          return (await httpGet(`${url}/nginx-healthz`, 1_000)).status === 200;
        },
        READY_TIMEOUT_MS,
        () => `nginx on ${url} not ready`,
      );
    } catch {
      const why = `${proc.output()}${read(errorLog)}`.slice(-LOG_TAIL_CHARS);
      await proc.stop(["SIGTERM", "SIGKILL"], 2_000);
      lastError = new Error(`nginx did not start on ${url}:\n${why}`);
      if (/address already in use/i.test(why)) continue;
      break;
    }
    return {
      url,
      port,
      httpsUrl: tlsPort === undefined ? undefined : `https://127.0.0.1:${tlsPort}`,
      pid: proc.pid,
      prefix,
      logs: () => `${proc.output()}${read(errorLog)}`,
      accessLog: () => read(join(prefix, "access.log")),
      async stop() {
        // SIGQUIT: graceful (waits for open streams, hence the short grace); SIGTERM: fast.
        await proc.stop(["SIGQUIT", "SIGTERM", "SIGKILL"], 2_000);
        rmSync(prefix, { recursive: true, force: true });
      },
    };
  }
  rmSync(prefix, { recursive: true, force: true });
  throw lastError ?? new Error("nginx did not start");
}
