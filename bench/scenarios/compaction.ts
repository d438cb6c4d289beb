/**
 * Compaction and request records: what a session costs Redis, and what reading it costs.
 *
 * The gateway's own store (src/store, the scripts the gateway ships) against a redis-server of the
 * harness's own, no HTTP: every figure here is Redis's, read from Redis itself.
 *
 * - **Memory per session**: 10,000-token sessions written the way a run writes them (a `start`, the
 *   tokens in writer-stamped batches of 1–8, `usage` and `done`; 4–8-byte tokens), once with nothing
 *   trimmed and once per retention bound (`MAX_EVENTS_PER_SESSION`: the default 10,000, then 1,000 and
 *   100), where the events beyond the bound are folded into the session's snapshot. Measured as the sum
 *   of `MEMORY USAGE … SAMPLES 0` over every key of the session, and as Redis's `used_memory` growth
 *   over all the sessions of a variant (which also holds the lifecycle feed's two entries per session,
 *   their request records and the expiry entries).
 * - **Read cost**: `store.read(id, null, 500)` (a reader from the start: on a compacted session the
 *   snapshot then 500 events) repeated on one ended session of each variant, one read at a time; also
 *   a reader 100 events behind the end. Time per read in this process, and Redis's own: the script's
 *   time from `INFO commandstats` (calls and µs of EVAL/EVALSHA) and Redis's CPU from `INFO cpu`.
 * - **Request records**: appends without a writer stamp (what `POST …/events` sends) store their first
 *   reply under `s:{id}:req:<requestId>` for `IDEMPOTENCY_TTL_SECONDS`. The same appends are written
 *   with a random request id (no `Idempotency-Key`), with an `Idempotency-Key`-shaped id and fingerprint,
 *   and with no request id (no record: the append before this change), to fresh sessions each time; the
 *   record's cost is the difference in `used_memory` and in script time per append.
 */
import { loadavg } from "node:os";
import { Redis } from "ioredis";
import { createKeyScheme, type KeyScheme } from "../../src/store/keys.js";
import { createRedisPubSub } from "../../src/store/redis-pubsub.js";
import { createRedisStore } from "../../src/store/redis-store.js";
import type { AppendOptions, EventInput, StoredEvent, StreamStore } from "../../src/store/types.js";
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { startRedisServer } from "../targets/redis.js";

const PREFIX = "bench:";
/** Large enough that nothing is ever trimmed. */
const KEEP_ALL = 1_000_000_000;
const DEFAULT_MAX_EVENTS = 10_000;
const DEFAULT_IDEMPOTENCY_TTL_SECONDS = 600;
const READ_COUNT = 500;
const TAIL_BEHIND = 100;

interface Plan {
  tokens: number;
  /** Sessions written per variant (memory is summed over them; one of them is read). */
  sessions: number;
  bounds: number[];
  reads: number;
  /** The reads of each kind are spread over this many rounds, every kind in turn. */
  readRounds: number;
  /** Appends per request-record variant. */
  recordAppends: number;
  recordSessions: number;
  /** Appends per shape for the script's time, spread over rounds, every shape in turn. */
  recordTimedAppends: number;
  recordRounds: number;
}

function plan(quick: boolean): Plan {
  return quick
    ? {
        tokens: 2_000,
        sessions: 1,
        bounds: [KEEP_ALL, DEFAULT_MAX_EVENTS, 1_000, 100],
        reads: 40,
        readRounds: 2,
        recordAppends: 400,
        recordSessions: 4,
        recordTimedAppends: 600,
        recordRounds: 2,
      }
    : {
        tokens: 10_000,
        sessions: 8,
        bounds: [KEEP_ALL, DEFAULT_MAX_EVENTS, 1_000, 100],
        reads: 1_000,
        readRounds: 10,
        // Many: the main and expiry dictionaries double at powers of two, a step that must be amortised.
        recordAppends: 100_000,
        recordSessions: 20,
        recordTimedAppends: 30_000,
        recordRounds: 10,
      };
}

/** A small deterministic generator, so every run writes the same text. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Tokens of 4–8 bytes: a space and 3–7 lowercase letters, now and then a comma or full stop. */
function tokens(count: number, seed: number): string[] {
  const next = random(seed);
  const letters = "etaoinshrdlucmfwypvbgkqjxz";
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const length = 3 + Math.floor(next() * 5);
    let word = " ";
    for (let j = 0; j < length; j++) word += letters[Math.floor(next() ** 1.6 * letters.length)];
    const roll = next();
    if (roll < 0.06 && length < 7) word += ",";
    else if (roll < 0.1 && length < 7) word += ".";
    out.push(word);
  }
  return out;
}

/** The batches a run's writer sends: the `start`, the tokens 1–8 at a time, then `usage` and `done`. */
function runBatches(id: string, words: readonly string[], seed: number): EventInput[][] {
  const next = random(seed);
  const batches: EventInput[][] = [
    [{ type: "start", data: { model: "bench-model", createdAt: new Date().toISOString() } }],
  ];
  for (let i = 0; i < words.length; ) {
    const size = i === 0 ? 1 : 1 + Math.floor(next() * 8);
    batches.push(words.slice(i, i + size).map((content) => ({ type: "token", data: { content } })));
    i += size;
  }
  batches.push([
    {
      type: "usage",
      data: { prompt_tokens: 412, completion_tokens: words.length, total_tokens: 412 + words.length },
    },
    { type: "done", data: { session_id: id, total_tokens: words.length, finish_reason: "stop" } },
  ]);
  return batches;
}

interface ScriptStats {
  calls: number;
  usec: number;
  cpuSeconds: number;
  usedMemory: number;
}

/**
 * Redis's own figures: the scripts' calls and time (EVAL + EVALSHA), its CPU, and its used_memory less
 * the clients' buffers (so with every key's main-dictionary and expiry entries, which MEMORY USAGE leaves out).
 */
async function stats(probe: Redis): Promise<ScriptStats> {
  const text = `${await probe.info("commandstats")}\r\n${await probe.info("cpu")}\r\n${await probe.info("memory")}`;
  let calls = 0;
  let usec = 0;
  for (const match of text.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(match[1]);
    usec += Number(match[2]);
  }
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(text)?.[1] ?? 0);
  return {
    calls,
    usec,
    cpuSeconds: field("used_cpu_user") + field("used_cpu_sys"),
    // Less the clients' query and reply buffers: they come and go with the traffic, not the data.
    usedMemory: field("used_memory") - field("mem_clients_normal"),
  };
}

function diff(a: ScriptStats, b: ScriptStats) {
  return {
    calls: b.calls - a.calls,
    usec: b.usec - a.usec,
    cpuMicros: (b.cpuSeconds - a.cpuSeconds) * 1e6,
    memory: b.usedMemory - a.usedMemory,
  };
}

const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Every key of one session (they share its `{id}` hash tag) and their `MEMORY USAGE`, summed by role. */
async function sessionMemory(probe: Redis, id: string) {
  const byKey: Record<string, number> = {};
  let cursor = "0";
  do {
    const [next, keys] = await probe.scan(cursor, "MATCH", `${PREFIX}s:{${id}}:*`, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      const bytes = Number(await probe.call("MEMORY", "USAGE", key, "SAMPLES", "0"));
      const role = key.slice(`${PREFIX}s:{${id}}:`.length).replace(/^req:.*/, "req");
      byKey[role] = (byKey[role] ?? 0) + bytes;
    }
  } while (cursor !== "0");
  return byKey;
}

async function readAll(store: StreamStore, id: string): Promise<StoredEvent[]> {
  const all: StoredEvent[] = [];
  let after: string | null = null;
  for (;;) {
    const { events } = await store.read(id, after, READ_COUNT);
    if (events.length === 0) return all;
    all.push(...events);
    after = events.at(-1)!.id;
  }
}

/** What a reader from the start rebuilds: the snapshot's text, then every kept token. */
function rebuiltText(events: readonly StoredEvent[]): {
  text: string;
  tokens: number;
  snapshotBytes: number;
} {
  let text = "";
  let count = 0;
  let snapshotBytes = 0;
  for (const event of events) {
    const data = JSON.parse(event.data) as { content?: string; folded?: Record<string, number> };
    if (event.type === "snapshot") {
      snapshotBytes = Buffer.byteLength(event.data);
      text = data.content ?? "";
      count = data.folded?.token ?? 0;
    } else if (event.type === "token") {
      text += data.content ?? "";
      count++;
    }
  }
  return { text, tokens: count, snapshotBytes };
}

/** One kind of read, timed over several interleaved rounds (so that load from elsewhere falls on every kind alike). */
class ReadTimer {
  readonly times: number[] = [];
  usec = 0;
  calls = 0;
  cpuMicros = 0;
  readonly roundMeans: number[] = [];

  constructor(
    readonly store: StreamStore,
    readonly id: string,
    readonly after: string | null,
  ) {}

  async round(probe: Redis, reads: number): Promise<void> {
    const a = await stats(probe);
    for (let i = 0; i < reads; i++) {
      const t = performance.now();
      await this.store.read(this.id, this.after, READ_COUNT);
      this.times.push(performance.now() - t);
    }
    const d = diff(a, await stats(probe));
    this.usec += d.usec;
    this.calls += d.calls;
    this.cpuMicros += d.cpuMicros;
    this.roundMeans.push(d.usec / Math.max(1, d.calls));
  }

  async result() {
    const sample = await this.store.read(this.id, this.after, READ_COUNT);
    const times = [...this.times].sort((x, y) => x - y);
    const at = (q: number) => round(times[Math.min(times.length - 1, Math.floor(times.length * q))]!, 3);
    const sum = times.reduce((acc, t) => acc + t, 0);
    return {
      reads: times.length,
      msPerRead: round(sum / times.length, 3),
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      scriptMicrosPerRead: round(this.usec / Math.max(1, this.calls)),
      /** The script's mean time in each round, lowest to highest: the spread the load caused. */
      scriptMicrosRange: [round(Math.min(...this.roundMeans)), round(Math.max(...this.roundMeans))],
      redisCpuMicrosPerRead: round(this.cpuMicros / times.length),
      replyBytes: sample.events.reduce((acc, e) => acc + e.id.length + e.type.length + e.data.length + 3, 0),
      events: sample.events.length,
      snapshot: sample.events[0]?.type === "snapshot",
    };
  }
}

export const compactionScenario = {
  name: "compaction",
  title: "Redis memory per 10,000-token session with and without compaction, snapshot reads, request records",
  /** Runs the gateway's store in this process: no build of the gateway needed. */
  needsBuild: false,
  async run(context: ScenarioContext) {
    if (!context.targets.includes("gateway")) return;
    const p = plan(context.quick);
    const redis = await startRedisServer();
    const command = new Redis(redis.port, "127.0.0.1", {
      enableAutoPipelining: true,
      maxRetriesPerRequest: 1,
    });
    const subscriber = new Redis(redis.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
    const probe = new Redis(redis.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
    for (const client of [command, subscriber, probe]) client.on("error", () => {});
    const keys: KeyScheme = createKeyScheme(PREFIX);
    const pubsub = createRedisPubSub(subscriber, command);
    const storeFor = (maxEventsPerSession: number) =>
      createRedisStore({
        redis: command,
        pubsub,
        keys,
        retention: {
          maxEventsPerSession,
          lifecycleMaxEvents: 10_000,
          endedSessionTtlSeconds: 3_600,
          idleSessionTtlSeconds: 3_600,
          requestRecordTtlSeconds: DEFAULT_IDEMPOTENCY_TTL_SECONDS,
        },
      });
    const loadBefore = readLoad();
    try {
      const words = tokens(p.tokens, 1);
      const expected = words.join("");
      const tokenBytes = words.reduce((sum, w) => sum + Buffer.byteLength(w), 0);
      // Every variant starts from the same empty keyspace, warmed up: the scripts loaded, the lifecycle
      // feed created, the allocator past its first pages.
      const warm = storeFor(KEEP_ALL);
      const fresh = async () => {
        await probe.call("FLUSHDB", "SYNC");
        for (let i = 0; i < 2; i++) await writeRun(warm, tag("warm"), words.slice(0, 200), i);
      };

      const sessions: Array<Record<string, unknown>> = [];
      const timers: Array<{ label: string; bound: number | null; from: "start" | "tail"; timer: ReadTimer }> =
        [];
      // Memory: every variant written into the same warmed keyspace (a few keys per session, so the
      // dictionaries barely grow); the used_memory growth of each is its own.
      await fresh();
      for (const bound of p.bounds) {
        const store = storeFor(bound);
        const ids = Array.from({ length: p.sessions }, () => tag(`m${bound === KEEP_ALL ? "all" : bound}-`));
        const a = await stats(probe);
        let appends = 0;
        for (const [i, id] of ids.entries()) appends += await writeRun(store, id, words, 100 + i);
        const b = await stats(probe);
        const written = diff(a, b);
        const perSession = await Promise.all(ids.map((id) => sessionMemory(probe, id)));
        const roles: Record<string, number> = {};
        for (const byKey of perSession)
          for (const [role, bytes] of Object.entries(byKey))
            roles[role] = (roles[role] ?? 0) + bytes / ids.length;
        const keysBytes = Object.values(roles).reduce((sum, v) => sum + v, 0);
        const id = ids[0]!;
        const all = await readAll(store, id);
        const rebuilt = rebuiltText(all);
        if (rebuilt.text !== expected || rebuilt.tokens !== words.length || all.at(-1)?.type !== "done") {
          context.problem(
            `compaction: a reader from the start of a session kept at ${label(bound)} rebuilt ${rebuilt.tokens} tokens ` +
              `(${rebuilt.text.length} chars${rebuilt.text === expected ? ", same text" : ", different text"}) of ${words.length}` +
              `${all.at(-1)?.type === "done" ? "" : `, last event ${all.at(-1)?.type}`}`,
          );
        }
        const keptEvents = Number(await command.xlen(keys.events(id)));
        const snapshotText = Number(await command.strlen(keys.snapshotContent(id)));
        const row = {
          bound: bound === KEEP_ALL ? null : bound,
          label: label(bound),
          sessions: ids.length,
          events: words.length + 3,
          keptEvents,
          snapshotBytes: rebuilt.snapshotBytes,
          /** Bytes of text in the snapshot's content string (its MEMORY USAGE also counts the string's spare room). */
          snapshotTextBytes: snapshotText,
          bytesPerSession: Math.round(keysBytes),
          byKey: Object.fromEntries(Object.entries(roles).map(([role, v]) => [role, Math.round(v)])),
          usedMemoryPerSession: Math.round(written.memory / ids.length),
          appendsPerSession: Math.round(appends / ids.length),
          scriptMicrosPerAppend: round(written.usec / Math.max(1, written.calls)),
        };
        sessions.push(row);
        context.log(
          `kept ${row.label.padEnd(9)}: ${row.keptEvents} of ${row.events} events, ${kib(row.bytesPerSession)} KiB in the session's keys ` +
            `(used_memory +${kib(row.usedMemoryPerSession)} KiB per session), snapshot event ${row.snapshotBytes} B ` +
            `(content ${snapshotText} B in a string of ${row.byKey["snap:content"] ?? 0} B), ${row.scriptMicrosPerAppend} µs script time per append`,
        );
        timers.push({
          label: row.label,
          bound: row.bound,
          from: "start",
          timer: new ReadTimer(store, id, null),
        });
        timers.push({
          label: row.label,
          bound: row.bound,
          from: "tail",
          timer: new ReadTimer(store, id, all.at(-(TAIL_BEHIND + 1))!.id),
        });
      }

      // Reads: every kind in turn, round after round.
      for (const { timer } of timers)
        for (let i = 0; i < 20; i++) await timer.store.read(timer.id, timer.after, READ_COUNT);
      const perRound = Math.max(1, Math.round(p.reads / p.readRounds));
      for (let r = 0; r < p.readRounds; r++)
        for (const { timer } of timers) await timer.round(probe, perRound);
      const reads: Array<Record<string, unknown>> = [];
      for (const { label: l, bound, from, timer } of timers) {
        const timed = await timer.result();
        reads.push({ bound, label: l, from, ...timed });
        context.log(
          `read kept ${l.padEnd(7)} ${from === "start" ? "from the start" : `${TAIL_BEHIND} behind   `}: ${timed.events} events${timed.snapshot ? " (snapshot first)" : ""}, ` +
            `${kib(timed.replyBytes)} KiB; ${timed.msPerRead} ms per read here (p99 ${timed.p99Ms}), script ${timed.scriptMicrosPerRead} µs ` +
            `(rounds ${timed.scriptMicrosRange.join("–")}), Redis CPU ${timed.redisCpuMicrosPerRead} µs`,
        );
      }

      const records = await measureRecords(context, probe, storeFor(KEEP_ALL), words, p, fresh);
      const loadAfter = readLoad();
      context.record(
        "compaction",
        "gateway",
        {
          tokens: p.tokens,
          tokenBytesAverage: round(tokenBytes / words.length, 2),
          sessionsPerVariant: p.sessions,
          reads: p.reads,
          readRounds: p.readRounds,
          readCount: READ_COUNT,
          tailBehind: TAIL_BEHIND,
          recordAppends: p.recordAppends,
          recordTimedAppends: p.recordTimedAppends,
          recordRounds: p.recordRounds,
          idempotencyTtlSeconds: DEFAULT_IDEMPOTENCY_TTL_SECONDS,
        },
        { sessions, reads, records, loadBefore, loadAfter, redisVersion: await redisVersion(probe) },
      );
    } finally {
      await pubsub.close().catch(() => {});
      for (const client of [command, subscriber, probe]) client.disconnect();
      await redis.stop();
    }
  },
};

/** One run's writes, batch by batch, each stamped with the writer's sequence; returns the appends made. */
async function writeRun(
  store: StreamStore,
  id: string,
  words: readonly string[],
  seed: number,
): Promise<number> {
  await store.createSession({ id, model: "bench-model", metadata: {}, owner: null, createdAt: Date.now() });
  const batches = runBatches(id, words, seed);
  const writerId = `bench.${id}`;
  // A run pipelines its batches; a few in flight at a time keeps this quick without reordering (the
  // script refuses a batch that overtakes its predecessor, and none does here: one connection, in order).
  const inFlight: Array<Promise<unknown>> = [];
  for (const [i, events] of batches.entries()) {
    inFlight.push(
      store.append(id, events, { writer: { writerId, seq: i + 1 } }).then((outcome) => {
        if (outcome.kind !== "appended") throw new Error(`run append to ${id}: ${outcome.kind}`);
      }),
    );
    if (inFlight.length >= 16) await inFlight.shift();
  }
  await Promise.all(inFlight);
  return batches.length + 1;
}

type Shape = "none" | "random" | "idempotency-key";
const SHAPES: readonly Shape[] = ["none", "random", "idempotency-key"];
const BATCHES = [1, 8];

/** Producer appends (no writer stamp) of `batch` tokens with one request-id shape, spread over `ids`. */
async function producerAppends(
  store: StreamStore,
  ids: readonly string[],
  words: readonly string[],
  batch: number,
  shape: Shape,
  count: number,
  offset = 0,
): Promise<void> {
  const worker = async (w: number) => {
    for (let i = w; i < count; i += ids.length) {
      const id = ids[i % ids.length]!;
      const n = offset + i;
      const events = Array.from({ length: batch }, (_, k) => ({
        type: "token",
        data: { content: words[(n * batch + k) % words.length]! },
      }));
      const options: AppendOptions =
        shape === "none"
          ? { requestId: "" }
          : shape === "idempotency-key"
            ? { requestId: `k.${fakeDigest(n)}`, fingerprint: fakeDigest(n + 7) }
            : {};
      const outcome = await store.append(id, events, options);
      if (outcome.kind !== "appended") throw new Error(`producer append to ${id}: ${outcome.kind}`);
    }
  };
  await Promise.all(ids.map((_, w) => worker(w)));
}

async function recordKeysOf(probe: Redis, ids: readonly string[]): Promise<string[]> {
  const keys: string[] = [];
  for (const id of ids) {
    let cursor = "0";
    do {
      const [next, found] = await probe.scan(cursor, "MATCH", `${PREFIX}s:{${id}}:req:*`, "COUNT", 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== "0");
  }
  return keys;
}

async function createSessions(store: StreamStore, prefix: string, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => tag(prefix));
  for (const id of ids)
    await store.createSession({ id, model: null, metadata: {}, owner: null, createdAt: Date.now() });
  return ids;
}

/**
 * The request records. Memory: the same appends (one token each, as \`POST …/events\` sends at this
 * benchmark's fan-out rates, and 8 tokens each) to fresh running sessions in an emptied keyspace, with
 * and without a record; the record is the difference. Time: every shape in turn, round after round, on
 * one set of sessions, so that load from elsewhere falls on all of them alike.
 */
async function measureRecords(
  context: ScenarioContext,
  probe: Redis,
  store: StreamStore,
  words: readonly string[],
  p: Plan,
  fresh: () => Promise<void>,
) {
  const rows: Array<Record<string, unknown>> = [];
  for (const batch of BATCHES) {
    for (const shape of SHAPES) {
      await fresh();
      const ids = await createSessions(store, `r${batch}-`, p.recordSessions);
      // The sessions' creation (an append without a writer stamp too) has its own records: not counted.
      const creation = new Set(await recordKeysOf(probe, ids.slice(0, 5)));
      const a = await stats(probe);
      await producerAppends(store, ids, words, batch, shape, p.recordAppends);
      const d = diff(a, await stats(probe));
      let recordKeys = 0;
      let recordBytes = 0;
      let ttl = -2;
      for (const key of await recordKeysOf(probe, ids.slice(0, 5))) {
        if (creation.has(key)) continue;
        recordKeys++;
        recordBytes += Number(await probe.call("MEMORY", "USAGE", key, "SAMPLES", "0"));
        if (ttl === -2) ttl = await probe.ttl(key);
      }
      rows.push({
        batch,
        shape,
        appends: p.recordAppends,
        usedMemoryPerAppend: round(d.memory / p.recordAppends),
        recordKeysSampled: recordKeys,
        // Less the session's own creation record (createSession is an append without a writer stamp too).
        recordBytes: recordKeys > 0 ? round(recordBytes / recordKeys) : null,
        recordTtlSeconds: recordKeys > 0 ? ttl : null,
      });
    }
  }

  // Time: interleaved rounds on one keyspace.
  await fresh();
  const timing = new Map<
    string,
    { ids: string[]; usec: number; calls: number; cpuMicros: number; means: number[] }
  >();
  for (const batch of BATCHES)
    for (const shape of SHAPES)
      timing.set(`${batch}/${shape}`, {
        ids: await createSessions(store, `t${batch}-`, p.recordSessions),
        usec: 0,
        calls: 0,
        cpuMicros: 0,
        means: [],
      });
  const perRound = Math.max(p.recordSessions, Math.round(p.recordTimedAppends / p.recordRounds));
  for (let r = 0; r < p.recordRounds; r++) {
    for (const batch of BATCHES) {
      for (const shape of SHAPES) {
        const t = timing.get(`${batch}/${shape}`)!;
        const a = await stats(probe);
        await producerAppends(store, t.ids, words, batch, shape, perRound, r * perRound);
        const d = diff(a, await stats(probe));
        t.usec += d.usec;
        t.calls += d.calls;
        t.cpuMicros += d.cpuMicros;
        t.means.push(d.usec / Math.max(1, d.calls));
      }
    }
  }
  for (const row of rows) {
    const t = timing.get(`${row.batch}/${row.shape}`)!;
    row.timedAppends = perRound * p.recordRounds;
    row.scriptMicrosPerAppend = round(t.usec / Math.max(1, t.calls));
    row.scriptMicrosRange = [round(Math.min(...t.means)), round(Math.max(...t.means))];
    row.redisCpuMicrosPerAppend = round(t.cpuMicros / (perRound * p.recordRounds));
  }
  for (const batch of BATCHES) {
    const none = rows.find((r) => r.batch === batch && r.shape === "none")!;
    for (const row of rows.filter((r) => r.batch === batch && r.shape !== "none")) {
      row.recordMemoryPerAppend = round(Number(row.usedMemoryPerAppend) - Number(none.usedMemoryPerAppend));
      row.recordScriptMicrosPerAppend = round(
        Number(row.scriptMicrosPerAppend) - Number(none.scriptMicrosPerAppend),
      );
      row.recordRedisCpuMicrosPerAppend = round(
        Number(row.redisCpuMicrosPerAppend) - Number(none.redisCpuMicrosPerAppend),
      );
    }
  }
  for (const row of rows) {
    context.log(
      `${row.batch} token(s)/append, record ${String(row.shape).padEnd(15)}: used_memory +${row.usedMemoryPerAppend} B per append` +
        `${row.recordMemoryPerAppend === undefined ? "" : ` (the record: ${row.recordMemoryPerAppend} B; MEMORY USAGE ${row.recordBytes} B)`}, ` +
        `script ${row.scriptMicrosPerAppend} µs (rounds ${(row.scriptMicrosRange as number[]).join("–")}), Redis CPU ${row.redisCpuMicrosPerAppend} µs per append`,
    );
  }
  return rows;
}

/** 43 base64url characters, like a SHA-256 digest (what an Idempotency-Key's request id and fingerprint are). */
function fakeDigest(n: number): string {
  const next = random(n + 1);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  let out = "";
  for (let i = 0; i < 43; i++) out += alphabet[Math.floor(next() * 64)];
  return out;
}

function label(bound: number): string {
  return bound === KEEP_ALL ? "all" : bound.toLocaleString("en-US");
}

const kib = (bytes: number) => round(bytes / 1024);

/** The machine's 1, 5 and 15-minute load averages: other processes share these cores. */
function readLoad(): number[] {
  return loadavg().map((v) => round(v, 2));
}

async function redisVersion(probe: Redis): Promise<string> {
  return /redis_version:(\S+)/.exec(await probe.info("server"))?.[1] ?? "unknown";
}
