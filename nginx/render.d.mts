/** Types for nginx/render.mjs: renders nginx/gateway.conf for given instances and listeners. */

export interface RenderTlsOptions {
  /** Certificate (full chain) file path. */
  cert: string;
  /** Private key file path. */
  key: string;
  /** HTTPS listener(s), e.g. "443" or "127.0.0.1:8443". Default "443". */
  listen?: string | string[];
}

export interface RenderGatewayOptions {
  /** Plain HTTP listener(s): "80", "127.0.0.1:8080", "[::]:80". */
  listen: string | string[];
  /**
   * Gateway instances, "host:port" or "unix:/path". The template's server parameters
   * (max_fails, fail_timeout) are appended unless the entry brings its own ("10.0.0.5:3000 backup").
   */
  upstreams: string[];
  /** Adds the HTTPS + HTTP/2 listener; without it the TLS lines are left out. */
  tls?: RenderTlsOptions;
  /**
   * The nginx version the output is for ("1.22.1"). Before 1.25.1, HTTP/2 is written as
   * `listen ... ssl http2` instead of `http2 on;`. Default: a current nginx.
   */
  nginxVersion?: string;
  /** Comment lines put at the top of the output. */
  notes?: string[];
  /** Replaces the access_log path ("off" disables it). Default: the template's /var/log/nginx/access.log. */
  accessLog?: string;
  /** The template text. Default: the contents of nginx/gateway.conf. */
  template?: string;
}

export interface RenderNginxOptions extends RenderGatewayOptions {
  /** Directory for pid, error/access logs and temp files; pass it to nginx as `-p`. */
  prefix: string;
  /** events { worker_connections } (default 4096; each stream uses two). */
  workerConnections?: number;
  /** error_log level (default "warn"). */
  errorLogLevel?: "debug" | "info" | "notice" | "warn" | "error" | "crit" | "alert" | "emerg";
}

/** The http-block-level config, for /etc/nginx/conf.d/ (like nginx/gateway.conf itself). */
export function renderGatewayConf(options: RenderGatewayOptions): string;

/**
 * nginx/compose.conf: the fragment for docker-compose.yml (listen 80, upstream gateway:3000, no TLS);
 * with `tls: true`, nginx/compose-tls.conf: the same plus HTTPS and HTTP/2 on 443 with the certificate
 * at /etc/nginx/certs/fullchain.pem and privkey.pem.
 */
export function renderComposeConf(options?: { tls?: boolean }): string;

/** The comment lines at the top of nginx/compose.conf. */
export const COMPOSE_NOTES: readonly string[];

/** The comment lines at the top of nginx/compose-tls.conf. */
export const COMPOSE_TLS_NOTES: readonly string[];

/**
 * A complete standalone nginx.conf (daemon off, worker_processes 1, events {}, http {}, pid, logs
 * and temp paths under prefix). Run it with `nginx -c <file> -p <prefix> -e <prefix>/error.log`.
 */
export function renderNginxConf(options: RenderNginxOptions): string;

/** `nginx -v` of the given binary ("1.22.1"), or undefined when it cannot be run. */
export function detectNginxVersion(binary?: string): string | undefined;
