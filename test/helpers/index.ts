/** Test helpers: real redis-server and gateway processes, free ports, key prefixes, an SSE client. */

export * from "./gateway.js";
export * from "./gateway-process.js";
export * from "./keys.js";
export * from "./log-lines.js";
export * from "./ports.js";
export * from "./redis-server.js";
export * from "./sse-client.js";
