// The raw-node baseline: the ceiling for one Node process fanning out SSE. No Redis, no history, no
// cursor, no backpressure: the gateway's two hot paths (append, multiplexed stream) and nothing else.
// Frames are encoded once per append and queued on every subscriber; one write per subscriber per
// turn of the event loop.
import http from "node:http";

const port = Number(process.env.PORT ?? 3001);
const host = process.env.HOST ?? "127.0.0.1";
const HEARTBEAT_MS = 15_000;
const HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no",
};
const channels = new Map(); // session id -> Set of subscribers
const subscribers = new Set();
const lastIds = new Map(); // session id -> last event number
const dirty = new Set();
let flushScheduled = false;

function flush() {
  flushScheduled = false;
  for (const sub of dirty) {
    sub.res.write(sub.pending);
    sub.pending = "";
  }
  dirty.clear();
}

function publish(sessionId, frames) {
  const subs = channels.get(sessionId);
  if (!subs) return;
  for (const sub of subs) {
    sub.pending += frames;
    dirty.add(sub);
  }
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function subscribe(res, ids) {
  res.writeHead(200, HEADERS);
  res.socket?.setNoDelay(true);
  res.write("retry: 2000\n\n");
  const sub = { res, pending: "" };
  subscribers.add(sub);
  for (const id of ids) {
    if (!channels.has(id)) channels.set(id, new Set());
    channels.get(id).add(sub);
  }
  res.on("close", () => {
    for (const id of ids) channels.get(id)?.delete(sub);
    subscribers.delete(sub);
    dirty.delete(sub);
  });
}

function append(req, res, sessionId) {
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (chunk) => {
    body += chunk;
  });
  req.on("end", () => {
    let last = lastIds.get(sessionId) ?? 0;
    let frames = "";
    const ids = [];
    for (const event of JSON.parse(body).events) {
      ids.push(++last);
      frames += `id: ${last}\nevent: ${sessionId}:${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`;
    }
    lastIds.set(sessionId, last);
    publish(sessionId, frames);
    res.writeHead(202, { "Content-Type": "application/json" }).end(JSON.stringify({ ids }));
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://raw");
  const appendMatch = /^\/api\/v1\/sessions\/([A-Za-z0-9_-]+)\/events$/.exec(url.pathname);
  if (req.method === "GET" && url.pathname === "/api/v1/stream") {
    subscribe(res, (url.searchParams.get("sessions") ?? "").split(",").filter(Boolean));
  } else if (req.method === "POST" && appendMatch) {
    append(req, res, appendMatch[1]);
  } else if (url.pathname === "/healthz") {
    res.end("ok");
  } else {
    res.writeHead(404).end();
  }
});
server.keepAliveTimeout = 65_000;
setInterval(() => {
  for (const sub of subscribers) sub.res.write(": ping\n\n");
}, HEARTBEAT_MS).unref();
server.listen(port, host);
process.on("SIGTERM", () => process.exit(0));
