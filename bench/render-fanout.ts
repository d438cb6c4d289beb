/**
 * BENCHMARKS.md's targets table (issue 18's targets) and the fan-out, idle and stages sections: each
 * fan-out ceiling with what decided it, every server at half the gateway's ceiling, idle memory as the
 * kernel reports it, and one append's path in stages.
 */
import type { ResultLine, Results } from "./lib/context.js";
import { agentTargetFigure } from "./render-agent.js";
import type { CeilingBound } from "./scenarios/fanout.js";
import type { StageRow } from "./scenarios/stages.js";
import type { StepResult } from "./scenarios/streams.js";

type Rows = Map<string, ResultLine> | undefined;
const n = (value: unknown) => (typeof value === "number" ? value.toLocaleString("en-US") : "–");
const fmt = (value: number | undefined, digits = 1) => (value === undefined ? "–" : value.toFixed(digits));
const status = (ok: boolean | undefined) => (ok === undefined ? "–" : ok ? "✅ met" : "❌ missed");

/** The targets the issue sets (issue 18). */
const GOALS = {
  vsRaw: 0.8,
  vsNchan: 10,
  halfP50: 1.5,
  cpuPerEvent: 1.1,
  idleAboveRawKiB: 4,
  replayEventsPerSecond: 300_000,
} as const;

export interface Fanout {
  bestRate: number;
  bestDelivered: number;
  firstFailRate: number | null;
  best: StepResult | null;
  /** At half the gateway's ceiling (`halfOf` "gateway") or half its own (since the eighth run). */
  half?: StepResult | null;
  halfOf?: "gateway" | "own";
  /** Earlier runs: a quarter of its own ceiling. */
  quarter?: StepResult | null;
  bound?: CeilingBound | null;
  steps: StepResult[];
  connect: { seconds: number; connectMs: { p50: number; p99: number } };
}
export const fanoutOf = (rows: Rows, target: string) => rows?.get(target)?.data as Fanout | undefined;
const data = <T>(rows: Rows, key: string) => rows?.get(key)?.data as T | undefined;

/** µs of server CPU per delivered event at a step. */
const cpuMicros = (s: StepResult | null | undefined) =>
  s?.server.eventsPerCpuSecond ? 1e6 / s.server.eventsPerCpuSecond : undefined;

interface ShapeVerdicts {
  label: string;
  /**
   * Why the ceiling ratios of this shape are not judged: raw-node (the check of the harness) did not
   * show its own limit. Null: judged.
   */
  notJudged: string | null;
  /** The gateway's ceiling was its own CPU's: with a baseline's figure only a lower bound of the baseline's ceiling, a ratio below the goal is still a sure miss. */
  gatewayServerBound: boolean;
  /** Why nchan's figure is only a lower bound of its ceiling (null: it was bound by its own CPU). */
  nchanNotBound: string | null;
  /** Why the same-rate comparisons are not judged (a load-generator thread saturated in one of them). */
  sameRateNotJudged: string | null;
  vsRaw?: number;
  vsNchan?: number;
  halfP50?: { gateway: number; raw: number; rate: number };
  cpu?: { gateway: number; raw: number; rate: number };
  violations?: number;
}

function shapeVerdicts(label: string, rows: Rows): ShapeVerdicts | null {
  const gw = fanoutOf(rows, "gateway");
  if (!gw) return null;
  const raw = fanoutOf(rows, "raw-node");
  const nchan = fanoutOf(rows, "nchan");
  const bound = raw?.bound;
  const notJudged = !raw
    ? "no raw-node baseline in this run"
    : !bound
      ? "raw-node's ceiling has no CPU record (a run before the eighth)"
      : bound.serverBound
        ? null
        : `raw-node was not bound by its own CPU at its ceiling (${n(bound.rate)}/s: ${bound.reason})`;
  const sameRate = raw?.halfOf === "gateway" && gw.half && raw.half && raw.half.rate === gw.half.rate;
  const saturatedAtHalf = [gw.half, raw?.half].find((s) => s?.loadgen.saturated);
  return {
    label,
    notJudged,
    gatewayServerBound: gw.bound?.serverBound === true,
    nchanNotBound: !nchan?.bound
      ? "nchan's ceiling has no CPU record"
      : nchan.bound.serverBound
        ? null
        : `nchan's ceiling was not its own CPU's (${nchan.bound.reason})`,
    sameRateNotJudged: saturatedAtHalf
      ? `a load-generator thread was saturated at ${n(saturatedAtHalf.rate)}/s`
      : null,
    vsRaw: raw?.bestDelivered ? gw.bestDelivered / raw.bestDelivered : undefined,
    vsNchan: nchan?.bestDelivered ? gw.bestDelivered / nchan.bestDelivered : undefined,
    halfP50: sameRate
      ? { gateway: gw.half!.latency.p50, raw: raw!.half!.latency.p50, rate: gw.half!.rate }
      : undefined,
    cpu:
      sameRate && cpuMicros(gw.half) && cpuMicros(raw!.half)
        ? { gateway: cpuMicros(gw.half)!, raw: cpuMicros(raw!.half)!, rate: gw.half!.rate }
        : undefined,
    violations: gw.steps.reduce((sum, s) => sum + s.correctness.length, 0),
  };
}

/**
 * How a row is judged: `ceiling` against a baseline's ceiling (raw-node, or nchan), `same-rate` at half
 * the gateway's ceiling, `always` (correctness).
 */
type Judging = "ceiling-raw" | "ceiling-nchan" | "same-rate" | "always";

function verdictOf(v: ShapeVerdicts, ok: boolean | undefined, judging: Judging, label: string): string {
  const harness = judging === "ceiling-raw" || judging === "ceiling-nchan" ? v.notJudged : null;
  const lowerBound = judging === "ceiling-nchan" ? (v.nchanNotBound ?? harness) : harness;
  if (judging === "same-rate" && v.sameRateNotJudged) return `not judged${label}: ${v.sameRateNotJudged}`;
  if (lowerBound === null || judging === "always" || judging === "same-rate") return `${status(ok)}${label}`;
  // The baseline's figure is a lower bound of its ceiling, the gateway's is its own CPU's: the true
  // ratio can only be lower, so a ratio below the goal is a sure miss; one above it proves nothing.
  if (ok === false && v.gatewayServerBound)
    return `❌ missed${label} (the baseline's figure is only a lower bound of its ceiling, so the true ratio is lower still: ${lowerBound})`;
  return `not judged${label}: ${lowerBound}`;
}

/** One row per target, both producer shapes in it where the run measured both. */
function fanoutRow(
  shapes: ShapeVerdicts[],
  what: string,
  goal: string,
  show: (v: ShapeVerdicts) => string | undefined,
  ok: (v: ShapeVerdicts) => boolean | undefined,
  judging: Judging,
): string {
  const present = shapes.filter((v) => show(v) !== undefined);
  if (present.length === 0) return `| ${what} | ${goal} | – | – |`;
  const figure = present.map((v) => `${show(v)} (${v.label})`).join("; ");
  const verdict = present
    .map((v) => verdictOf(v, ok(v), judging, present.length > 1 ? ` ${v.label}` : ""))
    .join(" / ");
  return `| ${what} | ${goal} | ${figure} | ${verdict} |`;
}

interface Idle {
  perConnectionKB: number;
  rssPerConnectionKiB?: number;
  compactedWithoutYoungGenerationKB?: number | null;
  rssAfterMs?: number;
}

export function targetRows(results: Results): string[] {
  const shapes = [
    shapeVerdicts("staggered", results.get("fanout-staggered")),
    shapeVerdicts("in step", results.get("fanout")),
  ].filter((v): v is ShapeVerdicts => v !== null);
  const idleGw = data<Idle>(results.get("idle"), "gateway");
  const idleRaw = data<Idle>(results.get("idle"), "raw-node");
  const rssAbove =
    idleGw?.rssPerConnectionKiB !== undefined && idleRaw?.rssPerConnectionKiB !== undefined
      ? idleGw.rssPerConnectionKiB - idleRaw.rssPerConnectionKiB
      : undefined;
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
  const row = (what: string, goal: string, figure: string, verdict: string) =>
    `| ${what} | ${goal} | ${figure} | ${verdict} |`;
  return [
    fanoutRow(
      shapes,
      "fan-out vs raw-node",
      `highest rate at p99 < 50 ms ≥ ${GOALS.vsRaw}× the raw Node server's (HTTP publishes)`,
      (v) => (v.vsRaw === undefined ? undefined : `${fmt(v.vsRaw, 2)}×`),
      (v) => (v.vsRaw === undefined ? undefined : v.vsRaw >= GOALS.vsRaw),
      "ceiling-raw",
    ),
    fanoutRow(
      shapes,
      "fan-out vs nchan",
      `≥ ${GOALS.vsNchan}× nchan with Redis`,
      (v) => (v.vsNchan === undefined ? undefined : `${fmt(v.vsNchan)}×`),
      (v) => (v.vsNchan === undefined ? undefined : v.vsNchan >= GOALS.vsNchan),
      "ceiling-nchan",
    ),
    fanoutRow(
      shapes,
      "latency at half the gateway's ceiling",
      `gateway p50 ≤ ${GOALS.halfP50}× raw-node's at that rate`,
      (v) =>
        v.halfP50 === undefined
          ? undefined
          : `${v.halfP50.gateway} vs ${v.halfP50.raw} ms at ${n(v.halfP50.rate)}/s (${fmt(v.halfP50.gateway / v.halfP50.raw, 2)}×)`,
      (v) => (v.halfP50 === undefined ? undefined : v.halfP50.gateway <= GOALS.halfP50 * v.halfP50.raw),
      "same-rate",
    ),
    fanoutRow(
      shapes,
      "CPU per delivered event",
      `≤ ${GOALS.cpuPerEvent}× raw-node's (same rate: half the gateway's ceiling)`,
      (v) =>
        v.cpu === undefined
          ? undefined
          : `${fmt(v.cpu.gateway, 2)} vs ${fmt(v.cpu.raw, 2)} µs (${fmt(v.cpu.gateway / v.cpu.raw, 2)}×)`,
      (v) => (v.cpu === undefined ? undefined : v.cpu.gateway <= GOALS.cpuPerEvent * v.cpu.raw),
      "same-rate",
    ),
    fanoutRow(
      shapes,
      "loss / duplicates / reordering",
      "zero at every step",
      (v) => (v.violations === undefined ? undefined : `${v.violations} violations`),
      (v) => (v.violations === undefined ? undefined : v.violations === 0),
      "always",
    ),
    row(
      "idle memory",
      `RSS per connection ≤ raw-node's + ${GOALS.idleAboveRawKiB} KiB (VmRSS, no forced GC)`,
      rssAbove === undefined
        ? idleGw && idleRaw
          ? `(no VmRSS figure; after a plain GC ${fmt(idleGw.perConnectionKB - idleRaw.perConnectionKB)} KB above)`
          : "–"
        : `${fmt(rssAbove)} KiB above (${fmt(idleGw?.rssPerConnectionKiB)} vs ${fmt(idleRaw?.rssPerConnectionKiB)}, ${Number(idleGw?.rssAfterMs ?? 0) / 1000} s after connecting); live (compacted) ${fmt(idleGw?.compactedWithoutYoungGenerationKB ?? undefined)} vs ${fmt(idleRaw?.compactedWithoutYoungGenerationKB ?? undefined)}`,
      status(rssAbove === undefined ? undefined : rssAbove <= GOALS.idleAboveRawKiB),
    ),
    row(
      "replay",
      `≥ ${n(GOALS.replayEventsPerSecond)} events/s to one client`,
      replayMin === undefined ? "–" : `${n(replays[0])} (single), ${n(replays[1])} (mux)`,
      status(replayMin === undefined ? undefined : replayMin >= GOALS.replayEventsPerSecond),
    ),
    row(
      "agent path",
      "≤ 1 ms added to the first token beyond the openai SDK's own cost, native and each door",
      agent[0],
      status(agent[1]),
    ),
    row(
      "Redis connections per instance",
      "constant",
      clients.length ? clients.join(" → ") : "–",
      status(clients.length ? clients.every((c) => c === clients[0]) : undefined),
    ),
    row(
      "Redis CPU per delivered event",
      "falls as subscribers/session grow",
      perEvent.length ? `${perEvent.join(" → ")} µs` : "–",
      status(falling),
    ),
  ];
}

// ---- sections -------------------------------------------------------------------------------------

export function stepRow(label: string, s: StepResult): string {
  const l = s.latency;
  const redis = s.redis ? `${s.redis.cpuPercent}%` : "–";
  const threads = s.loadgen.elus ? ` (${s.loadgen.elus.join(", ")})` : "";
  const lg = `${s.loadgen.cpuPercent}% / ${s.loadgen.eluMax}${threads}${s.loadgen.saturated ? " **sat.**" : ""}`;
  const machine = s.machine
    ? `${s.machine.busyPercent}% (${s.machine.irqPercent === undefined ? "" : `irq ${s.machine.irqPercent}%, `}others ${s.machine.othersPercent}%)`
    : "–";
  return (
    `| ${label} | ${n(s.rate)} | ${n(s.delivered)} | ${l.p50} / ${l.p90} / ${l.p99} / ${l.max} | ${s.server.cpuPercent}% (${n(s.server.eventsPerCpuSecond)}) | ` +
    `${s.server.rssMB} | ${redis} | ${lg} | ${machine} | ${s.bytesPerEvent} (${s.idBytesPerEvent}) | ${s.pass ? "pass" : s.reasons.join("; ")}${s.firstTry ? ` (${s.disturbedTries ? `try ${2 + s.disturbedTries}, after other processes were quiet` : "second try"}; first: ${s.firstTry.reasons.join("; ")})` : ""} |`
  );
}
export const STEP_HEAD = [
  "| | appends/s | delivered events/s | latency p50 / p90 / p99 / max ms | server CPU (events per CPU-second) | RSS MB | Redis CPU | loadgen CPU / ELU max (each thread) | machine CPU (of 100 × cores; irq: interrupts and softirqs; others: other processes) | bytes/event (id) | verdict |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
];

export function fanoutSection(name: string, rows: Map<string, ResultLine>): string {
  const first = [...rows.values()][0]!;
  const p = first.params;
  const out = [
    name === "fanout" ? "## Fan-out, sessions in step" : "## Fan-out, sessions staggered",
    "",
    `C=${p.connections} connections × S=${p.sessionsPerConnection} sessions out of P=${p.sessions} (${p.subscribersPerSession} subscribers per session); ` +
      `the append rate doubles from ${p.startRate}/s until a step fails, then is bisected. A step passes with p99 < ${p.p99LimitMs} ms, ` +
      `nothing lost, duplicated or reordered, and the appends keeping up. Steps: ${Number(p.warmupMs) / 1000} s warm-up, ${Number(p.measureMs) / 1000} s measured. ` +
      `The producer sends each session's due events once per ${p.tickMs} ms tick (one \`POST …/events\` per session with events due, to every server alike), ${Number(p.phases ?? 1) > 1 ? `with the sessions in ${p.phases} groups ${Number(p.tickMs) / Number(p.phases)} ms apart (independent runs are not in step)` : "every session at the same instant"}.`,
    "",
    "| target | highest passing appends/s | delivered events/s | first failing appends/s | gateway ÷ target | events per server CPU-second (at best) | what decided the ceiling |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  const gw = fanoutOf(rows, "gateway")?.bestDelivered;
  for (const [target, line] of rows) {
    const d = line.data as unknown as Fanout;
    const r = gw && d.bestDelivered ? gw / d.bestDelivered : undefined;
    const bound = d.bound
      ? `${d.bound.serverBound ? "**server-bound**" : "**not server-bound**"} at ${n(d.bound.rate)}/s: ${d.bound.reason}; load generator ${d.bound.loadgenCpuPercent}% (ELU max ${d.bound.loadgenEluMax})`
      : "–";
    out.push(
      `| ${target} | ${n(d.bestRate)} | ${n(d.bestDelivered)} | ${n(d.firstFailRate)} | ${r === undefined ? "–" : `${fmt(r, 2)}×`} | ${n(d.best?.server.eventsPerCpuSecond)} | ${bound} |`,
    );
  }
  const halfRate = fanoutOf(rows, "gateway")?.half?.rate;
  out.push(
    "",
    halfRate === undefined
      ? "At the highest passing rate, and at a quarter of it (earlier runs):"
      : `At the highest passing rate, and every server at half the gateway's (${n(halfRate)} appends/s):`,
    "",
    ...STEP_HEAD,
  );
  for (const [target, line] of rows) {
    const d = line.data as unknown as Fanout;
    if (d.best) out.push(stepRow(`${target} best`, d.best));
    if (d.half) out.push(stepRow(`${target} at ${n(d.half.rate)}/s`, d.half));
    else if (d.quarter) out.push(stepRow(`${target} ¼`, d.quarter));
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

export function fanoutReading(rows: Map<string, ResultLine>): string[] {
  const out: string[] = [];
  for (const [target, line] of rows) {
    const d = line.data as unknown as Fanout;
    if (!d.best) {
      out.push(`- **${target}**: no step passed.`);
      continue;
    }
    const failed = d.steps.find((s) => s.rate === d.firstFailRate);
    out.push(
      `- **${target}**: ${n(d.best.delivered)} events/s at ${n(d.best.rate)} appends/s, p99 ${d.best.latency.p99} ms; ` +
        `${failed ? `at ${n(failed.rate)}/s: ${failed.reasons.join("; ")}` : "no step failed"}` +
        `${d.bound ? `, ${d.bound.serverBound ? "bound by its own CPU" : "not bound by its own CPU"} (${d.bound.reason})` : ""}. ` +
        `${d.best.bytesPerEvent} bytes per event on the wire, ${d.best.idBytesPerEvent} of them the \`id:\` value.`,
    );
  }
  const raw = fanoutOf(rows, "raw-node")?.bound;
  if (raw) {
    out.push(
      raw.serverBound
        ? `- The harness held: raw-node reached its own CPU limit (${raw.serverCpuPercent}% of a core at ${n(raw.rate)}/s) with no load-generator thread saturated, so the other servers' ceilings are theirs, not the load generator's.`
        : `- **The harness did not show raw-node's own limit** (${raw.reason}), so the fan-out targets are not judged on this run.`,
    );
  }
  out.push(
    "- This machine has 2 cores for everything: the server, Redis, the load generator (which reads and checks every",
    "  event) and whatever else runs. The load generator's CPU and the machine's are in every row; when the machine is",
    "  full, a server's ceiling is partly the load generator's CPU, which is physical here, not a harness fault.",
  );
  return out;
}

export function idleSection(rows: Map<string, ResultLine>): string {
  const p = [...rows.values()][0]!.params;
  const after = Number(p.rssAfterMs ?? p.idleMs) / 1000;
  const out = [
    "## Idle connections",
    "",
    `C=${p.connections} connections, each multiplexing ${p.sessionsPerConnection} of ${p.sessions} quiet sessions. **RSS** is VmRSS as the kernel reports it,`,
    `read ${after} s after the last connection opened with no forced GC, above the same process before any connection (idle, compacted,`,
    "as V8 leaves an idle process): what an operator pays, the figure judged. Beside it, as in the earlier runs: after a plain",
    "full GC, after a full GC that compacts every page, and **live** (compacted, less the young generation's one-time growth).",
    'Per-connection figures in KiB (1,024 bytes), earlier runs\' "KB" included.',
    "",
    "| target | opened | connect time s (conn/s) | VmRSS before → after MB | **RSS KiB per connection** (anonymous) | plain GC | compacted | young-generation growth | live | JS heap | idle CPU |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const [target, line] of rows) {
    const d = line.data;
    const heap = d.jsHeapPerConnectionKB ?? d.heapPerConnectionKB;
    const rss =
      d.rssPerConnectionKiB === undefined
        ? "–"
        : `**${d.rssPerConnectionKiB}** (${d.rssAnonPerConnectionKiB ?? "–"})`;
    const before = d.idleBaseRssMB ?? d.baseRssMB;
    const afterMB = d.noGcRssMB ?? d.rssMB;
    out.push(
      `| ${target} | ${n(d.opened)} | ${d.connectSeconds} (${n(d.connectionsPerSecond)}) | ${before} → ${afterMB} | ${rss} | ${d.perConnectionKB} | ${d.compactedPerConnectionKB ?? "–"} | ${d.newSpacePerConnectionKB ?? "–"} | ${d.compactedWithoutYoungGenerationKB ?? "–"} | ${heap ?? "–"} | ${d.idleCpuPercent}% |`,
    );
  }
  return out.join("\n");
}

export function idleReading(rows: Map<string, ResultLine>): string[] {
  const lines: string[] = [];
  for (const [target, line] of rows) {
    const d = line.data;
    lines.push(
      `- **${target}**: ${d.rssPerConnectionKiB ?? "–"} KiB of RSS per connection (${d.rssAnonPerConnectionKiB ?? "–"} anonymous); after a plain GC ${d.perConnectionKB}, live ${d.compactedWithoutYoungGenerationKB ?? "–"}; idle CPU ${d.idleCpuPercent}%.`,
    );
  }
  lines.push(
    "- Without a forced GC the RSS holds what setting the connections up left behind: garbage not yet collected, the",
    "  young generation grown to its working size, and old-space pages freed but not yet compacted. V8 shrinks some of",
    "  it once the process idles (the live figure), but an operator sizes memory for the RSS that is there.",
  );
  return lines;
}

export function stagesSection(rows: Map<string, ResultLine>): string {
  const p = [...rows.values()][0]!.params;
  const out = [
    "## Where an append's latency goes",
    "",
    `The staggered fan-out shape (C=${p.connections} × S=${p.sessionsPerConnection} of P=${p.sessions}, ${p.subscribersPerSession} subscribers per session) at fixed rates, ` +
      `${Number(p.measureMs) / 1000} s measured. One append in ${p.stampEvery} carries its publish time; a probe preloaded into the server (\`bench/targets/stage-probe.mjs\`:` +
      " Node's `http.server.request.start` diagnostics channel, ioredis's `sendCommand` and `emit`, and socket writes; nothing in `src/`)" +
      " stamps its path. Each row is one stage's distribution over the traced appends (ms); the last rows are cumulative from the publish.",
    "",
  ];
  const targets = [...rows.keys()];
  out.push(
    `| stage | ${targets.map((t) => `${t} p50 / p90 / p99`).join(" | ")} |`,
    `| --- | ${targets.map(() => "---").join(" | ")} |`,
  );
  const stageNames: string[] = [];
  for (const line of rows.values()) {
    for (const row of line.data.stages as StageRow[]) {
      if (!stageNames.includes(row.stage)) stageNames.push(row.stage);
    }
  }
  for (const stage of stageNames) {
    const cells = targets.map((t) => {
      const row = (rows.get(t)!.data.stages as StageRow[]).find((r) => r.stage === stage);
      return row ? `${row.ms.p50} / ${row.ms.p90} / ${row.ms.p99}` : "–";
    });
    out.push(`| ${stage} | ${cells.join(" | ")} |`);
  }
  out.push(
    "",
    "| | traced appends | socket writes per traced append | server CPU | server event loop: busy, delay p50 / p99 / max ms | load generator CPU (ELU max) | machine CPU |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const [target, line] of rows) {
    const d = line.data as {
      traced: number;
      writesPerTracedAppend: number | null;
      serverCpuPercent: number;
      loadgenCpuPercent: number;
      loadgenEluMax: number;
      machine: { cores: number; busyPercent: number };
      loop?: { delayMs: { p50: number; p99: number; max: number }; utilization: number };
    };
    const loop = d.loop
      ? `${d.loop.utilization}, ${d.loop.delayMs.p50} / ${d.loop.delayMs.p99} / ${d.loop.delayMs.max}`
      : "–";
    out.push(
      `| ${target} | ${n(d.traced)} | ${d.writesPerTracedAppend ?? "–"} | ${d.serverCpuPercent}% | ${loop} | ${d.loadgenCpuPercent}% (${d.loadgenEluMax}) | ${d.machine.busyPercent}% of ${d.machine.cores * 100}% |`,
    );
  }
  return out.join("\n");
}

export const STAGES_READING = [
  "- A stage's p99 is its own; the p99s do not add up to the end-to-end p99 (different appends are slow at different stages).",
  "- The notice's synchronous handling is the hub's fan-out to every local reader of the session; frames are encoded",
  "  and written by the shared per-turn flush (`setImmediate`) after the turn's I/O, so the stage after it is the wait",
  "  for that flush plus framing. The probe's own work (a search for the stamp in every socket write) is inside these",
  "  figures, for both servers alike.",
];
