/** The tables and readings of BENCHMARKS.md, one function per scenario. */
import type { ResultLine, Results } from "./lib/context.js";
import { agentSection, agentTargetFigure } from "./render-agent.js";
import type { StepResult } from "./scenarios/streams.js";

type Rows = Map<string, ResultLine> | undefined;
const n = (value: unknown) => (typeof value === "number" ? value.toLocaleString("en-US") : "–");
const pct = (value: number) => `${Math.round(value * 100)}%`;
const ratio = (a: number | undefined, b: number | undefined) => (a && b ? a / b : undefined);
const fmt = (value: number | undefined, digits = 1) => (value === undefined ? "–" : value.toFixed(digits));
const status = (ok: boolean | undefined) => (ok === undefined ? "–" : ok ? "✅ met" : "❌ missed");

interface Fanout {
  bestRate: number;
  bestDelivered: number;
  firstFailRate: number | null;
  best: StepResult | null;
  quarter: StepResult | null;
  steps: StepResult[];
  connect: { seconds: number; connectMs: { p50: number; p99: number } };
}
const fanout = (rows: Rows, target: string) => rows?.get(target)?.data as Fanout | undefined;
const data = <T>(rows: Rows, key: string) => rows?.get(key)?.data as T | undefined;

function stepRow(label: string, s: StepResult): string {
  const l = s.latency;
  const redis = s.redis ? `${s.redis.cpuPercent}%` : "–";
  const lg = `${s.loadgen.cpuPercent}% / ${s.loadgen.eluMax}${s.loadgen.saturated ? " **sat.**" : ""}`;
  return (
    `| ${label} | ${n(s.rate)} | ${n(s.delivered)} | ${l.p50} / ${l.p90} / ${l.p99} / ${l.max} | ${s.server.cpuPercent}% (${n(s.server.eventsPerCpuSecond)}) | ` +
    `${s.server.rssMB} | ${redis} | ${lg} | ${s.bytesPerEvent} (${s.idBytesPerEvent}) | ${s.pass ? "pass" : s.reasons.join("; ")}${s.firstTry ? ` (second try; first: ${s.firstTry.reasons.join("; ")})` : ""} |`
  );
}
const STEP_HEAD = [
  "| | appends/s | delivered events/s | latency p50 / p90 / p99 / max ms | server CPU (events per CPU-second) | RSS MB | Redis CPU | loadgen CPU / ELU | bytes/event (id) | verdict |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
];

interface FanoutFigures {
  vsNchan: number | undefined;
  vsRaw: number | undefined;
  effRaw: number | undefined;
  quarterP50: number | undefined;
  violations: number | undefined;
}

function fanoutFigures(f: Rows): FanoutFigures {
  const gw = fanout(f, "gateway");
  const efficiency = (target: string) => fanout(f, target)?.best?.server.eventsPerCpuSecond ?? undefined;
  return {
    vsNchan: ratio(gw?.bestDelivered, fanout(f, "nchan")?.bestDelivered),
    vsRaw: ratio(gw?.bestDelivered, fanout(f, "raw-node")?.bestDelivered),
    effRaw: ratio(efficiency("gateway"), efficiency("raw-node")),
    quarterP50: gw?.quarter?.latency.p50,
    violations: gw?.steps.reduce((sum, s) => sum + s.correctness.length, 0),
  };
}

/** One figure per producer shape: "in step" (every session at once) and "staggered". */
function perShape(
  shapes: Array<[string, FanoutFigures]>,
  show: (f: FanoutFigures) => string | undefined,
  ok: (f: FanoutFigures) => boolean | undefined,
): [string, string] {
  const present = shapes.filter(([, f]) => show(f) !== undefined);
  if (present.length === 0) return ["–", "–"];
  return [
    present.map(([label, f]) => `${show(f)} (${label})`).join("; "),
    present.map(([label, f]) => `${status(ok(f))}${present.length > 1 ? ` ${label}` : ""}`).join(" / "),
  ];
}

export function summaryRows(results: Results): string[] {
  const shapes: Array<[string, FanoutFigures]> = [
    ["in step", fanoutFigures(results.get("fanout"))],
    ["staggered", fanoutFigures(results.get("fanout-staggered"))],
  ];
  // Judged on live memory (compacted, without the young generation's one-time growth) where the run
  // measured it; the plain-GC figure of the earlier runs is shown beside it.
  type Idle = { perConnectionKB: number; compactedWithoutYoungGenerationKB?: number | null };
  const idleGw = data<Idle>(results.get("idle"), "gateway");
  const idleRaw = data<Idle>(results.get("idle"), "raw-node");
  const live = (d: Idle | undefined) => d?.compactedWithoutYoungGenerationKB ?? undefined;
  const liveAbove =
    live(idleGw) !== undefined && live(idleRaw) !== undefined ? live(idleGw)! - live(idleRaw)! : undefined;
  const plainAbove = idleGw && idleRaw ? idleGw.perConnectionKB - idleRaw.perConnectionKB : undefined;
  const above = liveAbove ?? plainAbove;
  const replays = ["single", "mux"].map(
    (k) => data<{ eventsPerSecond: number }>(results.get("replay"), k)?.eventsPerSecond,
  );
  const replayMin = replays.every((v) => v !== undefined) ? Math.min(...(replays as number[])) : undefined;
  const agent = agentTargetFigure(results.get("agent")?.get("gateway"));
  const rc = [...(results.get("redis-cost")?.values() ?? [])].filter((line) => line.target === "gateway");
  const clients = rc.map((line) => (line.data.redisClients as { total: number }).total);
  const perEvent = rc.map(
    (line) => (line.data.step as StepResult).redis?.cpuMicrosPerDelivered ?? Number.NaN,
  );
  const falling = perEvent.length > 1 ? perEvent.every((v, i) => i === 0 || v < perEvent[i - 1]!) : undefined;
  const row = (what: string, goal: string, [figure, verdict]: [string, string]) =>
    `| ${what} | ${goal} | ${figure} | ${verdict} |`;
  return [
    row(
      "fan-out vs nchan",
      "≥ 10× nchan-redis",
      perShape(
        shapes,
        (f) => (f.vsNchan === undefined ? undefined : `${fmt(f.vsNchan)}×`),
        (f) => (f.vsNchan === undefined ? undefined : f.vsNchan >= 10),
      ),
    ),
    row(
      "fan-out vs raw-node",
      "≥ 50% of raw-node",
      perShape(
        shapes,
        (f) => (f.vsRaw === undefined ? undefined : pct(f.vsRaw)),
        (f) => (f.vsRaw === undefined ? undefined : f.vsRaw >= 0.5),
      ),
    ),
    row("(for reference) events per server CPU-second vs raw-node", "–", [
      perShape(
        shapes,
        (f) => (f.effRaw === undefined ? undefined : pct(f.effRaw)),
        () => undefined,
      )[0],
      "",
    ]),
    row(
      "loss / duplicates / reordering",
      "zero at every step",
      perShape(
        shapes,
        (f) => (f.violations === undefined ? undefined : `${f.violations} violations`),
        (f) => (f.violations === undefined ? undefined : f.violations === 0),
      ),
    ),
    row("idle memory", "≤ 4 KB/connection above raw-node", [
      above === undefined
        ? "–"
        : liveAbove !== undefined
          ? `${fmt(liveAbove)} KB live (${fmt(live(idleGw))} vs ${fmt(live(idleRaw))}); ${fmt(plainAbove)} KB after a plain GC 10 s in (${fmt(idleGw?.perConnectionKB)} vs ${fmt(idleRaw?.perConnectionKB)})`
          : `${fmt(above)} KB (${fmt(idleGw?.perConnectionKB)} vs ${fmt(idleRaw?.perConnectionKB)})`,
      status(above === undefined ? undefined : above <= 4),
    ]),
    row(
      "latency",
      "p50 ≤ 5 ms at ¼ of the highest passing rate",
      perShape(
        shapes,
        (f) => (f.quarterP50 === undefined ? undefined : `${f.quarterP50} ms`),
        (f) => (f.quarterP50 === undefined ? undefined : f.quarterP50 <= 5),
      ),
    ),
    row("replay", "≥ 200,000 events/s to one client", [
      replayMin === undefined ? "–" : `${n(replays[0])} (single), ${n(replays[1])} (mux)`,
      status(replayMin === undefined ? undefined : replayMin >= 200_000),
    ]),
    row(
      "agent path",
      "≤ 1 ms added to the first token beyond the openai SDK's own cost, native and each door",
      [agent[0], status(agent[1])],
    ),
    row("Redis connections per instance", "constant", [
      clients.length ? clients.join(" → ") : "–",
      status(clients.length ? clients.every((c) => c === clients[0]) : undefined),
    ]),
    row("Redis CPU per delivered event", "falls as subscribers/session grow", [
      perEvent.length ? `${perEvent.join(" → ")} µs` : "–",
      status(falling),
    ]),
  ];
}

export function section(name: string, rows: Rows): string {
  if (!rows || rows.size === 0) return "";
  const first = [...rows.values()][0]!;
  const p = first.params;
  switch (name) {
    case "fanout":
    case "fanout-staggered": {
      const out = [
        name === "fanout" ? "## Fan-out" : "## Fan-out, sessions staggered",
        "",
        `C=${p.connections} connections × S=${p.sessionsPerConnection} sessions out of P=${p.sessions} (${p.subscribersPerSession} subscribers per session); ` +
          `the append rate doubles from ${p.startRate}/s until a step fails, then is bisected. A step passes with p99 < ${p.p99LimitMs} ms, ` +
          `nothing lost, duplicated or reordered, and the appends keeping up. Steps: ${Number(p.warmupMs) / 1000} s warm-up, ${Number(p.measureMs) / 1000} s measured. ` +
          `The producer sends each session's due events once per ${p.tickMs} ms tick, ${Number(p.phases ?? 1) > 1 ? `with the sessions in ${p.phases} groups a ${Number(p.tickMs) / Number(p.phases)} ms apart (independent runs are not in step)` : "every session at the same instant"}.`,
        "",
        "| target | highest passing appends/s | delivered events/s | first failing appends/s | gateway ÷ target | events per server CPU-second (at best) |",
        "| --- | --- | --- | --- | --- | --- |",
      ];
      const gw = fanout(rows, "gateway")?.bestDelivered;
      for (const [target, line] of rows) {
        const d = line.data as unknown as Fanout;
        const r = ratio(gw, d.bestDelivered);
        out.push(
          `| ${target} | ${n(d.bestRate)} | ${n(d.bestDelivered)} | ${n(d.firstFailRate)} | ${r === undefined ? "–" : `${fmt(r, 2)}×`} | ${n(d.best?.server.eventsPerCpuSecond)} |`,
        );
      }
      out.push("", "At the highest passing rate, and at a quarter of it:", "", ...STEP_HEAD);
      for (const [target, line] of rows) {
        const d = line.data as unknown as Fanout;
        if (d.best) out.push(stepRow(`${target} best`, d.best));
        if (d.quarter) out.push(stepRow(`${target} ¼`, d.quarter));
      }
      for (const [target, line] of rows) {
        const d = line.data as unknown as Fanout;
        out.push("", `<details><summary>${target}: every step</summary>`, "", ...STEP_HEAD);
        d.steps.forEach((s, i) => {
          out.push(stepRow(String(i + 1), s));
        });
        out.push("", "</details>");
      }
      return out.join("\n");
    }
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
    case "idle": {
      const out = [
        "## Idle connections",
        "",
        `C=${p.connections} connections, each multiplexing ${p.sessionsPerConnection} of ${p.sessions} quiet sessions. RSS per connection is measured above the server's own baseline (its sessions created, no connection yet), after ${Number(p.idleMs) / 1000} s idle, the same way for every Node server at both ends:`,
        "after a plain full GC (as in the earlier runs: V8 chooses which pages to compact, so free space left on",
        "old-space pages by garbage promoted while the connections were set up still counts), and after a full GC that",
        "compacts every page (what V8's memory reducer does by itself once a process idles for about a minute).",
        "**Live** is the compacted figure less the young generation's growth, which is committed once (about 16–32 MB),",
        "whatever the number of connections; it is the figure judged against the target.",
        "",
        "| target | opened | connect time s (conn/s) | RSS before → after MB (plain GC) | KB per connection, plain GC | compacted | young-generation growth | **live** | JS heap | idle CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      ];
      for (const [target, line] of rows) {
        const d = line.data;
        const heap = d.jsHeapPerConnectionKB ?? d.heapPerConnectionKB;
        out.push(
          `| ${target} | ${n(d.opened)} | ${d.connectSeconds} (${n(d.connectionsPerSecond)}) | ${d.baseRssMB} → ${d.rssMB} | ${d.perConnectionKB} | ${d.compactedPerConnectionKB ?? "–"} | ${d.newSpacePerConnectionKB ?? "–"} | **${d.compactedWithoutYoungGenerationKB ?? "–"}** | ${heap ?? "–"} | ${d.idleCpuPercent}% |`,
        );
      }
      return out.join("\n");
    }
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
