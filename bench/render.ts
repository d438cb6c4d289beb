/**
 * Renders BENCHMARKS.md from the JSON lines of one run (the latest complete one unless `--run` says
 * otherwise), plus a history of fan-out figures over every full run in the file.
 *
 *   node --import tsx bench/render.ts [--in bench/results/results.jsonl] [--out BENCHMARKS.md] [--run ID]
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { EndLine, Line, ResultLine, Results, RunLine } from "./lib/context.js";
import { readings, section, summaryRows } from "./render-sections.js";
import { topologiesSection } from "./render-topologies.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

export function readLines(file: string): Line[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as Line);
}

/** scenario → target → result; for scenarios with several results per target the key adds the params. */
function byScenario(lines: ResultLine[]): Results {
  const map: Results = new Map();
  for (const line of lines) {
    const targets = map.get(line.scenario) ?? new Map<string, ResultLine>();
    map.set(line.scenario, targets);
    const key =
      line.scenario === "cursor"
        ? String(line.params.sessions)
        : line.scenario === "replay"
          ? String(line.params.framing)
          : line.scenario === "redis-cost"
            ? `${line.target} ×${line.params.subscribersPerSession}`
            : line.scenario === "stages"
              ? `${line.target} at ${line.params.rate}/s`
              : line.target;
    targets.set(key, line);
  }
  return map;
}

/** A comparison (fixed rates, another build) or a partial run (`--only`): never the run a page is rendered from. */
const isComparison = (run: RunLine) => /--rates|--gateway-entry/.test(run.command);
const isPartial = (run: RunLine) => isComparison(run) || /--only/.test(run.command);

function pickRun(lines: Line[], runId?: string): RunLine {
  const runs = lines.filter((line): line is RunLine => line.type === "run");
  const ended = new Set(lines.filter((line) => line.type === "end").map((line) => line.runId));
  const complete = runs.filter((r) => ended.has(r.runId) && !r.quick);
  const run = runId
    ? runs.find((r) => r.runId === runId)
    : ([...complete].reverse().find((r) => !isPartial(r)) ?? complete.at(-1) ?? runs.at(-1));
  if (!run) throw new Error(runId ? `no run ${runId} in the results` : "no run in the results");
  return run;
}

/**
 * The results a page shows. A page rendered from a given run (the run just made, or `--run`) shows that
 * run's results, and for each scenario it did not run, those of the latest complete full-size run that
 * did. Otherwise every scenario comes from the latest complete full-size run that measured it, so a
 * `--only` run adds or replaces its own sections and keeps the others. Comparisons (fixed rates, another
 * build) never count. Returns the results and, by scenario, the runs other than `run` they come from.
 */
function resultsFor(
  lines: Line[],
  run: RunLine,
  ownFirst: boolean,
): { results: Results; borrowed: Map<string, RunLine> } {
  const own = lines.filter((line): line is ResultLine => line.type === "result" && line.runId === run.runId);
  const borrowed = new Map<string, RunLine>();
  if (run.quick) return { results: byScenario(own), borrowed };
  const ended = new Set(lines.filter((line) => line.type === "end").map((line) => line.runId));
  const candidates = lines
    .filter((line): line is RunLine => line.type === "run")
    .filter((r) => ended.has(r.runId) && !r.quick && !isComparison(r))
    .reverse();
  const order = ownFirst ? [run, ...candidates.filter((r) => r.runId !== run.runId)] : candidates;
  const chosen: ResultLine[] = [];
  const present = new Set<string>();
  for (const donor of order) {
    const theirs = lines.filter(
      (line): line is ResultLine =>
        line.type === "result" && line.runId === donor.runId && !present.has(line.scenario),
    );
    for (const scenario of new Set(theirs.map((line) => line.scenario))) {
      present.add(scenario);
      if (donor.runId !== run.runId) borrowed.set(scenario, donor);
    }
    chosen.push(...theirs);
  }
  return { results: byScenario(chosen), borrowed };
}

/** Hand-written notes (bench/NOTES.md): profiles, what was changed, what is left. */
function notes(): string {
  const path = join(ROOT, "bench/NOTES.md");
  return existsSync(path) ? `${readFileSync(path, "utf8").trim()}\n` : "";
}

/** The machine's load averages (1 min) at the start and end of a run, where the run recorded them. */
function loadNote(lines: Line[], run: RunLine): string {
  const end = lines.find((line): line is EndLine => line.type === "end" && line.runId === run.runId);
  const before = run.loadAverage?.[0];
  const after = end?.loadAverage?.[0];
  return before === undefined
    ? ""
    : `; load average ${before}${after === undefined ? "" : ` → ${after}`} on ${run.machine.nproc} cores`;
}

function history(lines: Line[]): string {
  const ended = new Set(lines.filter((line) => line.type === "end").map((line) => line.runId));
  const runs = lines.filter(
    (line): line is RunLine =>
      line.type === "run" && !line.quick && ended.has(line.runId) && !isComparison(line),
  );
  const rows = runs.flatMap((run) =>
    (["fanout", "fanout-staggered"] as const).flatMap((scenario) => {
      const results = lines.filter(
        (line): line is ResultLine =>
          line.type === "result" && line.runId === run.runId && line.scenario === scenario,
      );
      if (results.length === 0) return [];
      const figure = (target: string) => {
        const data = results.find((line) => line.target === target)?.data;
        return data ? String(data.bestDelivered) : "–";
      };
      const raw = results.find((line) => line.target === "raw-node")?.data.bound as
        | { serverBound: boolean; serverCpuPercent: number }
        | null
        | undefined;
      const check = raw ? `${raw.serverBound ? "yes" : "no"} (${raw.serverCpuPercent}%)` : "not checked";
      return [
        `| ${run.runId} | ${run.machine.versions.gateway} | ${scenario === "fanout" ? "in step" : "staggered"} | ${figure("gateway")} | ${figure("raw-node")} | ${figure("nchan")} | ${String(run.options.workers ?? "–")} | ${check} |`,
      ];
    }),
  );
  if (rows.length < 2) return "";
  return [
    "## History (fan-out, events/s delivered at the highest passing rate)",
    "",
    "Before/after record for profiling work: every run in `bench/results/results.jsonl` that measured fan-out.",
    "Until the eighth run one load-generator thread read every stream and nothing checked that raw-node's",
    "ceiling was its own (issue 18): compare earlier rows with that in mind.",
    "",
    "| run | commit | producers | gateway | raw-node | nchan | load-generator threads | raw-node bound by its own CPU at its ceiling |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

export function render(lines: Line[], runId?: string): string {
  const run = pickRun(lines, runId);
  const end = lines.find((line) => line.type === "end" && line.runId === run.runId);
  const { results, borrowed } = resultsFor(lines, run, runId !== undefined);
  const borrowedNote = [...new Set(borrowed.values())].map((donor) => {
    const names = [...borrowed].filter(([, r]) => r === donor).map(([name]) => name);
    return `Section${names.length > 1 ? "s" : ""} ${names.map((name) => `\`${name}\``).join(", ")} from run \`${donor.runId}\` (\`${donor.command}\`, commit ${donor.machine.versions.gateway}${loadNote(lines, donor)}).`;
  });
  const m = run.machine;
  const out = [
    "# Benchmarks",
    "",
    `Rendered by \`bench/render.ts\` from \`bench/results/results.jsonl\`, run \`${run.runId}\`` +
      `${run.quick ? " (a --quick smoke run: sizes are tiny, numbers mean nothing)" : ""}. ` +
      "Do not edit by hand; re-run the benchmark. Absolute numbers depend on the machine: compare the ratios.",
    "",
    "## How to run",
    "",
    "```sh",
    "ulimit -n 65536            # the idle scenario holds 5,000 connections per process",
    "npm run bench              # everything, ~10-20 min on 2 cores; appends to bench/results/results.jsonl, renders this file",
    "npm run bench -- --quick   # every scenario at tiny sizes in about a minute (CI); fails only on loss/dup/reorder or a crash",
    "npm run bench -- --only fanout --targets gateway,raw-node   # one scenario, some targets",
    "npm run bench -- --only stages      # one append's path in stages, gateway and raw-node at 300 and 800 appends/s (or --rates)",
    "npm run bench -- --only fanout --targets gateway --profile  # gateway under node --cpu-prof (bench/results/profiles)",
    "npm run bench -- --only compaction   # Redis memory per session with and without compaction, snapshot reads, request records (~1 min; the other sections stay)",
    "npm run bench -- --only fanout --targets gateway --rates 300,600 --gateway-entry /tmp/before/dist/server.js  # another build at fixed rates",
    "node --import tsx bench/render.ts   # re-render from the results file",
    "```",
    "",
    `This run: \`${run.command}\`${end && end.type === "end" ? `, ${end.seconds} s, ${end.ok ? "no problems" : `problems: ${end.problems.length}`}` : ", did not finish"}${loadNote(lines, run)}.`,
    ...(borrowedNote.length ? ["", ...borrowedNote] : []),
    "",
    "## Machine",
    "",
    "| cores | CPU | memory | kernel | open files | load-generator threads |",
    "| --- | --- | --- | --- | --- | --- |",
    `| ${m.nproc} | ${m.cpuModel} | ${m.memoryGiB} GiB | ${m.kernel} | ${m.openFileLimit} | ${String(run.options.workers)} |`,
    "",
    "| node | redis | nginx | nchan | gateway commit |",
    "| --- | --- | --- | --- | --- |",
    `| ${m.versions.node} | ${m.versions.redis} | ${m.versions.nginx} | ${m.versions.nchan} | ${m.versions.gateway} |`,
    "",
    "Everything (gateway, Redis, nginx, raw-node, load generator) shares these cores: the load generator's",
    "own CPU, each of its threads' event-loop utilisation (ELU) and the whole machine's CPU are reported with",
    "every step, and a step where a load-generator thread was above 90% ELU is marked *saturated* — there, the",
    "figure is a lower bound of the server's. Each fan-out ceiling says what decided it; the fan-out targets are",
    "judged only when raw-node, the baseline, was bound by its own CPU at its ceiling (the load generator was not the limit).",
    "",
    "## Targets",
    "",
    "| target | goal | this run | |",
    "| --- | --- | --- | --- |",
    ...summaryRows(results),
    "",
  ];
  for (const name of [
    "fanout",
    "fanout-staggered",
    "stages",
    "dashboard",
    "idle",
    "replay",
    "agent",
    "cursor",
    "redis-cost",
    "compaction",
  ]) {
    const text = section(name, results.get(name));
    if (text) out.push(text, readings(name, results), "");
  }
  out.push(topologiesSection(results.get("topologies")), "");
  out.push(notes(), history(lines));
  return `${out
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim()}\n`;
}

export function renderFile(input: string, output: string, runId?: string): void {
  writeFileSync(output, render(readLines(input), runId));
  console.log(`rendered ${output}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: { in: { type: "string" }, out: { type: "string" }, run: { type: "string" } },
  });
  renderFile(
    values.in ?? join(ROOT, "bench/results/results.jsonl"),
    values.out ?? join(ROOT, "BENCHMARKS.md"),
    values.run,
  );
}
