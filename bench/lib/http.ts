/** A small keep-alive HTTP client for the producer and setup calls (lighter per request than fetch). */
import http from "node:http";

export interface HttpReply {
  status: number;
  body: string;
}

export interface HttpClient {
  request(method: string, path: string, body?: string, headers?: Record<string, string>): Promise<HttpReply>;
  json<T = unknown>(method: string, path: string, value?: unknown): Promise<{ status: number; body: T }>;
  close(): void;
}

const REQUEST_TIMEOUT_MS = 30_000;

export function httpClient(host: string, port: number, maxSockets = 64): HttpClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  const request = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
    new Promise<HttpReply>((resolve, reject) => {
      const req = http.request(
        {
          host,
          port,
          method,
          path,
          agent,
          headers: body === undefined ? headers : { "content-length": Buffer.byteLength(body), ...headers },
          timeout: REQUEST_TIMEOUT_MS,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on("error", reject);
      req.end(body);
    });
  return {
    request,
    async json<T>(method: string, path: string, value?: unknown) {
      const reply = await request(
        method,
        path,
        value === undefined ? undefined : JSON.stringify(value),
        value === undefined ? {} : { "content-type": "application/json" },
      );
      let parsed: unknown = reply.body;
      try {
        parsed = reply.body === "" ? null : JSON.parse(reply.body);
      } catch {
        // not JSON: keep the text
      }
      return { status: reply.status, body: parsed as T };
    },
    close: () => agent.destroy(),
  };
}

/** Throws with the reply when the status is not 2xx. */
export function expectOk(what: string, reply: { status: number; body: unknown }): void {
  if (reply.status < 200 || reply.status >= 300) {
    const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
    throw new Error(`${what}: HTTP ${reply.status} ${text.slice(0, 300)}`);
  }
}
