/** The tables and readings of BENCHMARKS.md, one function per scenario. */
import type { ResultLine } from "./lib/context.js";
import { agentSection } from "./render-agent.js";
import {
  fanoutSection,
  idleSection,
  STEP_HEAD,
  stagesSection,
  stepRow,
  targetRows,
} from "./render-fanout.js";
import type { StepResult } from "./scenarios/streams.js";

type Rows = Map<string, ResultLine> | undefined;
const n = (value: unknown) => (typeof value === "number" ? value.toLocaleString("en-US") : "–");
/** The targets table: issue 18's targets, judged in render-fanout.ts. */
export const summaryRows = targetRows;

export function section(name: string, rows: Rows): string {
  if (!rows || rows.size === 0) return "";
  const first = [...rows.values()][0]!;
  const p = first.params;
  switch (name) {
    case "fanout":
    case "fanout-staggered":
      return fanoutSection(name, rows);
    case "stages":
      return stagesSection(rows);
    case "dashboard": {
      const out = [
        "## Dashboard",
        "",
        `C=${p.connections} connections each watching the same ${p.sessionsPerConnection} sessions; ${p.activeSessions} of them stream at ${p.tokensPerSecondPerSession} tokens/s. ${Number(p.measureMs) / 1000} s measured.`,
        "",
        "| target | connect p50 / p99 ms |",
        "| --- | --- |",
      ];
      for (const [target, line] of rows) {
        const c = line.data.connect as { connectMs: { p50: number; p99: number } };
        out.push(`| ${target} | ${c.connectMs.p50} / ${c.connectMs.p99} |`);
      }
      out.push("", ...STEP_HEAD);
      for (const [target, line] of rows) out.push(stepRow(target, line.data.step as StepResult));
      return out.join("\n");
    }
    case "idle":
      return idleSection(rows);
    case "replay": {
      const out = [
        "## Replay",
        "",
        `One client resumes a backlog of ${n(p.backlog)} token events, from just after the session's first event.`,
        "",
        "| framing | events/s until live | seconds | bytes/event | gateway CPU | loadgen ELU |",
        "| --- | --- | --- | --- | --- | --- |",
      ];
      for (const [framing, line] of rows) {
        const d = line.data;
        out.push(
          `| ${framing} | ${n(d.eventsPerSecond)} | ${d.seconds} | ${d.bytesPerEvent} | ${d.serverCpuPercent}% | ${d.loadgenElu}${d.loadgenSaturated ? " **sat.**" : ""} |`,
        );
      }
      return out.join("\n");
    }
    case "agent":
      return agentSection(first);
    case "cursor": {
      const out = [
        "## Cursor size",
        "",
        "Bytes of the multiplexed `id:` value with every session positioned (each received one token), with 90% of them ended, and once every session has ended.",
        "",
        "| sessions | via | id bytes while streaming | bytes per session | id bytes with 90% ended | id bytes once all ended |",
        "| --- | --- | --- | --- | --- | --- |",
      ];
      for (const [count, line] of rows) {
        const d = line.data;
        out.push(
          `| ${count} | ${d.via} | ${d.positionedBytes} | ${d.positionedBytesPerSession} | ${d.mostlyFinishedBytes ?? "–"} | ${d.finishedBytes} |`,
        );
      }
      return out.join("\n");
    }
    case "redis-cost": {
      const out = [
        "## Redis cost",
        "",
        `${p.sessions} sessions at ${n(p.rate)} appends/s in total; each connection watches one session, and the connections per session grow. ` +
          "Commands are Redis's own count (INFO commandstats), including those a Lua script runs.",
        "",
        "| target × subscribers/session | delivered events/s | Redis CPU | Redis µs CPU per delivered event | commands per delivered / per appended event | Redis connections (idle → loaded) | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
      ];
      for (const [key, line] of rows) {
        const s = line.data.step as StepResult;
        const c = line.data.redisClients as { total: number };
        const idle = line.data.redisClientsIdle as { total: number };
        out.push(
          `| ${key} | ${n(s.delivered)} | ${s.redis?.cpuPercent}% | ${s.redis?.cpuMicrosPerDelivered} | ${s.redis?.commandsPerDelivered} / ${s.redis?.commandsPerPublished} | ${idle.total} → ${c.total} | ${s.latency.p99} |`,
        );
      }
      return out.join("\n");
    }
    case "compaction":
      return compactionSection(first);
    default:
      return "";
  }
}

interface CompactionData {
  sessions: Array<{
    bound: number | null;
    label: string;
    sessions: number;
    events: number;
    keptEvents: number;
    snapshotBytes: number;
    snapshotTextBytes?: number;
    bytesPerSession: number;
    byKey: Record<string, number>;
    usedMemoryPerSession: number;
    appendsPerSession: number;
    scriptMicrosPerAppend: number;
  }>;
  reads: Array<{
    label: string;
    from: "start" | "tail";
    events: number;
    snapshot: boolean;
    replyBytes: number;
    msPerRead: number;
    p50Ms: number;
    p99Ms: number;
    scriptMicrosPerRead: number;
    scriptMicrosRange?: [number, number];
    redisCpuMicrosPerRead: number;
  }>;
  records: Array<{
    batch: number;
    shape: string;
    appends: number;
    usedMemoryPerAppend: number;
    recordMemoryPerAppend?: number;
    recordBytes: number | null;
    recordTtlSeconds: number | null;
    scriptMicrosPerAppend: number;
    scriptMicrosRange?: [number, number];
    recordScriptMicrosPerAppend?: number;
    redisCpuMicrosPerAppend: number;
    recordRedisCpuMicrosPerAppend?: number;
  }>;
  loadBefore?: number[];
  loadAfter?: number[];
}

const kib = (bytes: number) => (bytes / 1024).toFixed(1);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0);
const signed = (value: number | undefined) =>
  value === undefined ? "" : ` (${value >= 0 ? "+" : ""}${value})`;
const range = (r: [number, number] | undefined) => (r ? `; rounds ${r[0]}–${r[1]}` : "");
/** Request-record rates the memory table is worked out for (appends/s). */
export const RECORD_RATES = [100, 1_000, 10_000];

function compactionSection(line: ResultLine): string {
  const p = line.params;
  const d = line.data as unknown as CompactionData;
  const ttl = Number(p.idempotencyTtlSeconds);
  const roles = (byKey: Record<string, number>) =>
    ["events", "meta", "snap", "snap:content", "snap:reasoning", "req"]
      .filter((role) => byKey[role] !== undefined)
      .map((role) => `${role} ${kib(byKey[role]!)}`)
      .join(", ");
  const load =
    d.loadBefore?.length && d.loadAfter?.length
      ? ` Load average (1 min) on this shared 2-core machine: ${d.loadBefore[0]} when the scenario started, ${d.loadAfter[0]} when it ended; times are as loaded as that (the memory figures do not depend on it).`
      : "";
  const out = [
    "## Compaction and request records",
    "",
    "The gateway's own store (`src/store`, the scripts it ships) against a redis-server of the harness's own, no HTTP. " +
      `${p.sessionsPerVariant} session${Number(p.sessionsPerVariant) === 1 ? "" : "s"} per row of ${n(p.tokens)} tokens each (${p.tokenBytesAverage} bytes per token on average), written as a run writes them: ` +
      "a `start`, the tokens in writer-stamped batches of 1–8, then `usage` and `done`; kept whole, then at each `MAX_EVENTS_PER_SESSION` bound, " +
      "where the events beyond it are folded into the session's snapshot. Memory is the sum of `MEMORY USAGE … SAMPLES 0` over every key of a session, " +
      "and as a cross-check Redis's `used_memory` growth (less client buffers) per session, which also holds the lifecycle feed's " +
      `two entries per session, their request records and the keys' dictionary and expiry entries.${load}`,
    "",
    "| events kept | events kept of written | memory per session, KiB (by key) | used_memory growth per session, KiB | snapshot event, bytes (text in the content string / its size) | script µs per append while writing |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const s of d.sessions) {
    const text =
      s.snapshotTextBytes === undefined || !s.byKey["snap:content"]
        ? ""
        : ` (${n(s.snapshotTextBytes)} / ${n(s.byKey["snap:content"])})`;
    out.push(
      `| ${s.bound === null ? "all (nothing trimmed)" : `${n(s.bound)}${s.bound === 10_000 ? " (default)" : ""}`} | ${n(s.keptEvents)} of ${n(s.events)} | **${kib(s.bytesPerSession)}** (${roles(s.byKey)}) | ${kib(s.usedMemoryPerSession)} | ${s.snapshotBytes ? `${n(s.snapshotBytes)}${text}` : "–"} | ${s.scriptMicrosPerAppend} |`,
    );
  }
  out.push(
    "",
    `Reads of one ended session of each kind, ${n(p.reads)} of each kind${p.readRounds ? ` in ${p.readRounds} rounds taking every kind in turn` : ""}, one read at a time: \`store.read(id, null, ${p.readCount})\` (a reader from the start: ` +
      `on a compacted session the snapshot comes first), and a reader ${p.tailBehind} events behind the end. Time per read in the calling process ` +
      "(round trip and parsing), the script's own time in Redis (`INFO commandstats`, EVALSHA; the spread of the rounds' means), and Redis's CPU (`INFO cpu`) per read.",
    "",
    "| events kept | reader | events returned | reply KiB | ms per read, mean (p50 / p99) | script µs per read | Redis CPU µs per read |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const r of d.reads) {
    out.push(
      `| ${r.label} | ${r.from === "start" ? "from the start" : `${p.tailBehind} behind`} | ${r.snapshot ? `snapshot + ${r.events - 1}` : r.events} | ${kib(r.replyBytes)} | ${r.msPerRead} (${r.p50Ms} / ${r.p99Ms}) | ${r.scriptMicrosPerRead}${range(r.scriptMicrosRange)} | ${r.redisCpuMicrosPerRead} |`,
    );
  }
  out.push(
    "",
    `Request records: ${n(p.recordAppends)} appends without a writer stamp (what \`POST …/events\` sends) to fresh running sessions in an emptied keyspace, with a random request id ` +
      "(no `Idempotency-Key`), with an `Idempotency-Key` (hashed id and body fingerprint), and with none (no record: the append before this change). " +
      `The record is the difference from "none"; it lives ${ttl} s (\`IDEMPOTENCY_TTL_SECONDS\`), so a steady rate holds rate × ${ttl} of them. ` +
      `Times${p.recordRounds ? ` from ${p.recordRounds} rounds taking every kind in turn` : ""}.`,
    "",
    `| tokens per append | request id | used_memory per append, B | the record, B (MEMORY USAGE of its key) | script µs per append (the record's share) | Redis CPU µs per append (the record's share) | records held at ${RECORD_RATES.map((r) => n(r)).join(" / ")} appends/s |`,
    "| --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const r of d.records) {
    const held =
      r.recordMemoryPerAppend === undefined
        ? "–"
        : RECORD_RATES.map((rate) => `${mib(r.recordMemoryPerAppend! * rate * ttl)} MiB`).join(" / ");
    out.push(
      `| ${r.batch} | ${r.shape} | ${r.usedMemoryPerAppend} | ${r.recordMemoryPerAppend === undefined ? "–" : `**${r.recordMemoryPerAppend}** (${r.recordBytes})`} | ${r.scriptMicrosPerAppend}${signed(r.recordScriptMicrosPerAppend)}${range(r.scriptMicrosRange)} | ${r.redisCpuMicrosPerAppend}${signed(r.recordRedisCpuMicrosPerAppend)} | ${held} |`,
    );
  }
  return out.join("\n");
}

export { readings } from "./render-readings.js";
