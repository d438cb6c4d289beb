// Preloaded into a Node server under test by the `stages` scenario only (`node --import …`); nothing
// in the server's code knows of it. It timestamps one append's path from outside, at the points Node
// and ioredis expose, for the append requests whose events carry a publish stamp `"p":<ms>` (the
// producer stamps some of them; see scenarios/stages.ts):
//
//   request    the request's head is parsed (diagnostics channel http.server.request.start)
//   body       its body has been read (the request's 'end')
//   sent       the append script is handed to the socket (ioredis sendCommand; with auto-pipelining,
//              when the pipeline is written at the end of the turn)
//   acked      Redis answered the script
//   notice     the session's notice arrives on the subscriber connection (ioredis emits 'message')
//   dispatched the synchronous handling of that notice returned (the hub's fan-out to its readers)
//   firstWrite the first socket write carrying one of the request's events, on any connection
//   lastWrite  the last such write (every subscriber written once)
//   writes     how many socket writes carried them
//
// Times are ms since the epoch (performance.timeOrigin + performance.now()), comparable with the
// producer's and the load generator's. SIGHUP writes `<pid>.json` into STAGE_PROBE_DIR: every record
// so far (the reader picks them by publish time), and the event loop's delay and utilisation since the
// previous SIGHUP. A request's session is matched to its script call by the session id in the URL and
// in the script's keys: the producer keeps one append in flight per session.
import dc from "node:diagnostics_channel";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

const now = () => performance.timeOrigin + performance.now();
const STAMP = '"p":';
const APPEND_PATH = /^\/api\/v1\/sessions\/([^/?]+)\/events/;
/** Records kept at most (a long run must not grow without bound). */
const MAX_RECORDS = 200_000;

/** stamp text → record */
const records = new Map();
/** session id → { request, body } of its latest append request */
const latestRequest = new Map();

function recordFor(stamp) {
  let record = records.get(stamp);
  if (record === undefined && records.size < MAX_RECORDS) {
    record = { p: Number(stamp), writes: 0 };
    records.set(stamp, record);
  }
  return record;
}

/** Every distinct stamp in `text` (a string, or a Buffer read as latin1). */
function stampsIn(text) {
  const found = [];
  let at = text.indexOf(STAMP);
  while (at >= 0) {
    let end = at + STAMP.length;
    for (;;) {
      const c = typeof text === "string" ? text.charCodeAt(end) : text[end];
      if (!((c >= 48 && c <= 57) || c === 46)) break;
      end++;
    }
    const stamp =
      typeof text === "string"
        ? text.slice(at + STAMP.length, end)
        : text.latin1Slice(at + STAMP.length, end);
    if (stamp !== "" && !found.includes(stamp)) found.push(stamp);
    at = text.indexOf(STAMP, end);
  }
  return found;
}

dc.subscribe("http.server.request.start", ({ request }) => {
  if (request.method !== "POST") return;
  const match = APPEND_PATH.exec(request.url ?? "");
  if (!match) return;
  const entry = { request: now(), body: null };
  latestRequest.set(decodeURIComponent(match[1]), entry);
  request.once("end", () => {
    entry.body = now();
  });
});

// Socket writes: Node's net.Socket hands every write and writev to _writeGeneric. Only the server's
// own connections count (`socket.server`): the script's write to Redis carries the stamps too.
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function (writev, data, encoding, cb) {
  if (!this.server) return writeGeneric.call(this, writev, data, encoding, cb);
  const t = now();
  const chunks = writev ? data.map((entry) => entry.chunk) : [data];
  for (const chunk of chunks) {
    if (typeof chunk !== "string" && !Buffer.isBuffer(chunk)) continue;
    if (chunk.indexOf(STAMP) < 0) continue;
    for (const stamp of stampsIn(chunk)) {
      const record = records.get(stamp);
      if (record === undefined) continue; // the append's own request body, or the server's reply
      record.firstWrite ??= t;
      record.lastWrite = t;
      record.writes++;
    }
  }
  return writeGeneric.call(this, writev, data, encoding, cb);
};

try {
  const { default: Redis } = await import("ioredis");
  const sendCommand = Redis.prototype.sendCommand;
  Redis.prototype.sendCommand = function (command, stream) {
    if (command && (command.name === "evalsha" || command.name === "eval")) {
      const t = now();
      let stamps = [];
      let session = null;
      for (const arg of command.args ?? []) {
        if (typeof arg === "string") {
          if (session === null) {
            const open = arg.indexOf("{");
            const close = arg.indexOf("}", open + 1);
            if (open >= 0 && close > open) session = arg.slice(open + 1, close);
          }
          if (arg.indexOf(STAMP) >= 0) stamps = stampsIn(arg);
        }
      }
      for (const stamp of stamps) {
        const record = recordFor(stamp);
        if (record === undefined || record.sent !== undefined) continue;
        record.sent = t;
        const request = session === null ? undefined : latestRequest.get(session);
        if (request) {
          record.request = request.request;
          record.body = request.body ?? undefined;
        }
        command.promise?.then(
          () => {
            record.acked = now();
          },
          () => {},
        );
      }
    }
    return sendCommand.call(this, command, stream);
  };
  const emit = Redis.prototype.emit;
  Redis.prototype.emit = function (event, ...args) {
    const message = args[1];
    if (
      (event !== "message" && event !== "smessage") ||
      typeof message !== "string" ||
      message.indexOf(STAMP) < 0
    )
      return emit.call(this, event, ...args);
    const t = now();
    const stamps = stampsIn(message);
    const result = emit.call(this, event, ...args);
    const done = now();
    for (const stamp of stamps) {
      const record = recordFor(stamp);
      if (record === undefined || record.notice !== undefined) continue;
      record.notice = t;
      record.dispatched = done;
    }
    return result;
  };
} catch {
  // Not the gateway (the raw-node baseline has no Redis): the HTTP and write stages only.
}

// A server without Redis (the raw-node baseline) has no script call to match its request to: with
// STAGE_PROBE_READ_BODY=1 the probe reads the stamps from the body as it arrives. Only for a server that
// listens for 'data' in the same turn as the request (a listener switches the request to flowing mode;
// a handler that waited first would miss chunks), which raw-node-server.mjs does.
dc.subscribe("http.server.request.start", ({ request }) => {
  if (process.env.STAGE_PROBE_READ_BODY !== "1") return;
  if (request.method !== "POST" || !APPEND_PATH.test(request.url ?? "")) return;
  const started = now();
  let stamps = null;
  request.prependListener("data", (chunk) => {
    if (stamps === null && chunk.indexOf(STAMP) >= 0) stamps = stampsIn(chunk);
  });
  request.once("end", () => {
    const done = now();
    for (const stamp of stamps ?? []) {
      const record = recordFor(stamp);
      if (record === undefined) continue;
      record.request ??= started;
      record.body ??= done;
    }
  });
});

// How long the event loop keeps a ready callback waiting (sampled every ms), and how busy it is: the
// queueing every stage above includes.
let loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
let elu = performance.eventLoopUtilization();

process.on("SIGHUP", () => {
  const dir = process.env.STAGE_PROBE_DIR;
  // The histogram holds the whole interval between samples: the lateness is what exceeds the 1 ms.
  const ms = (ns) => Math.max(0, Math.round((ns - 1e6) / 1e3) / 1e3);
  const loop = {
    delayMs: {
      p50: ms(loopDelay.percentile(50)),
      p90: ms(loopDelay.percentile(90)),
      p99: ms(loopDelay.percentile(99)),
      max: ms(loopDelay.max),
    },
    utilization: Math.round(performance.eventLoopUtilization(elu).utilization * 1000) / 1000,
  };
  if (dir)
    writeFileSync(`${dir}/${process.pid}.json`, JSON.stringify({ records: [...records.values()], loop }));
  loopDelay.disable();
  loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  elu = performance.eventLoopUtilization();
});
