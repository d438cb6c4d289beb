/**
 * `npm run bench [-- options]`: builds the gateway if dist/ is stale, runs the scenarios against the
 * selected targets, appends JSON lines to the results file and renders BENCHMARKS.md. Everything runs
 * on loopback free ports and is stopped by process id at the end, on errors and on SIGINT.
 *
 *   --quick                 every scenario at tiny sizes (~1 min; CI): exits non-zero only on a
 *                           contract violation (loss, duplicates, reordering, gaps) or a crash
 *   --only a,b              scenarios: fanout,fanout-staggered,stages,dashboard,idle,replay,agent,agent-ab,cursor,
 *                           redis-cost,compaction,wait,topologies
 *   --targets a,b           gateway,raw-node,nchan (default all three)
 *   --workers N             load-generator threads (default: one per core, at least 2, at most 4: one
 *                           thread saturates before the raw-node baseline does)
 *   --out FILE              results file (default bench/results/results.jsonl; quick: a temp file)
 *   --idle-connections N    the idle scenario's C (default 5,000; quick 200)
 *   --producer-phases N     overrides both fan-out scenarios' producer phase groups (1 = every session in step)
 *   --rates A,B             fan-out scenarios run these append rates as fixed steps instead of the ramp
 *   --step-seconds N        each fixed-rate step measures N seconds (default 5; a p99 wants a longer window)
 *   --gateway-entry PATH    the gateway's entry point, to compare another build (default dist/server.js)
 *   --agent-paths a,b       the agent scenario's paths (default all: see scenarios/agent.ts), e.g.
 *                           direct,sdk,native to compare builds on the native endpoint alone
 *   --agent-upstream-ms N   the agent scenarios' fixture waits N ms before it answers (default 0: at once)
 *   --compare-entry PATH    agent-ab runs this build beside this checkout's (or --gateway-entry's), run
 *                           by run (quick, without it: this build against itself, a smoke test)
 *   --no-build --no-render  --profile (gateway runs with --cpu-prof into bench/results/profiles)
 */
import { execSync } from "node:child_process";
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { appendLine, type Scenario, type ScenarioContext } from "./lib/context.js";
import { machineInfo } from "./lib/measure.js";
import { killAllNow, openFileLimit, stopAll } from "./lib/procs.js";
import { LoadGen } from "./loadgen/pool.js";
import { renderFile } from "./render.js";
import { agentScenario } from "./scenarios/agent.js";
import { agentAbScenario } from "./scenarios/agent-ab.js";
import { AGENT_PATHS } from "./scenarios/agent-read.js";
import { compactionScenario } from "./scenarios/compaction.js";
import { cursorScenario } from "./scenarios/cursor.js";
import { dashboardScenario } from "./scenarios/dashboard.js";
import { fanoutScenario, fanoutStaggeredScenario } from "./scenarios/fanout.js";
import { idleScenario } from "./scenarios/idle.js";
import { redisCostScenario } from "./scenarios/redis-cost.js";
import { replayScenario } from "./scenarios/replay.js";
import { stagesScenario } from "./scenarios/stages.js";
import { topologiesScenario } from "./scenarios/topologies.js";
import { waitScenario } from "./scenarios/wait.js";
import { REPO_ROOT, TARGET_NAMES, type TargetName } from "./targets/index.js";

const SCENARIOS: readonly Scenario[] = [
  fanoutScenario,
  fanoutStaggeredScenario,
  stagesScenario,
  dashboardScenario,
  idleScenario,
  replayScenario,
  agentScenario,
  agentAbScenario,
  cursorScenario,
  redisCostScenario,
  compactionScenario,
  waitScenario,
  topologiesScenario,
];
/** Connections of the full idle scenario: each process (server, load generator) needs a descriptor per connection. */
const FULL_OPEN_FILES = 5_000;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function ensureBuilt(): void {
  const built = join(REPO_ROOT, "dist/server.js");
  if (existsSync(built) && statSync(built).mtimeMs >= newestMtime(join(REPO_ROOT, "src"))) return;
  console.log("building the gateway (dist/ is missing or older than src/) …");
  execSync("npm run build", { cwd: REPO_ROOT, stdio: "inherit" });
}

/** 1, 5 and 15-minute load averages: other work on the machine, recorded with every run. */
function loadAverage(): number[] {
  return loadavg().map((value) => Math.round(value * 100) / 100);
}

function list<T extends string>(raw: string | undefined, allowed: readonly T[], what: string): T[] {
  if (raw === undefined) return [...allowed];
  const names = raw.split(",").map((part) => part.trim()) as T[];
  const bad = names.filter((name) => !allowed.includes(name));
  if (bad.length > 0) throw new Error(`unknown ${what}: ${bad.join(", ")} (known: ${allowed.join(", ")})`);
  return names;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      targets: { type: "string" },
      workers: { type: "string" },
      out: { type: "string" },
      "no-build": { type: "boolean", default: false },
      "no-render": { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      "idle-connections": { type: "string" },
      "producer-phases": { type: "string" },
      rates: { type: "string" },
      "step-seconds": { type: "string" },
      "gateway-entry": { type: "string" },
      "agent-paths": { type: "string" },
      "agent-upstream-ms": { type: "string" },
      "compare-entry": { type: "string" },
    },
  });
  const quick = values.quick ?? false;
  const scenarioNames = list(
    values.only,
    SCENARIOS.map((s) => s.name),
    "scenario",
  );
  const targets = list<TargetName>(values.targets, TARGET_NAMES, "target");
  const agentPaths =
    values["agent-paths"] === undefined ? undefined : list(values["agent-paths"], AGENT_PATHS, "agent path");
  const workers = Number(values.workers ?? Math.min(4, Math.max(2, availableParallelism())));
  const out =
    values.out ??
    (quick ? join(tmpdir(), "sse-bench-quick.jsonl") : join(REPO_ROOT, "bench/results/results.jsonl"));
  const agentUpstreamMs = Number(values["agent-upstream-ms"] ?? 0);
  if (!(Number.isInteger(agentUpstreamMs) && agentUpstreamMs >= 0)) {
    throw new Error(`--agent-upstream-ms: whole milliseconds, 0 or more, not ${values["agent-upstream-ms"]}`);
  }
  if (values["step-seconds"] !== undefined && !(Number(values["step-seconds"]) > 0)) {
    throw new Error(`--step-seconds: a number of seconds above 0, not ${values["step-seconds"]}`);
  }
  const openFiles = openFileLimit();
  const needed = Number(values["idle-connections"] ?? (quick ? 0 : FULL_OPEN_FILES));
  if (openFiles < needed + 1_000) {
    throw new Error(
      `open-file limit ${openFiles} is too low for ${needed} connections: run \`ulimit -n 65536\` first`,
    );
  }
  // Scenarios that run the gateway's code in this process (through tsx) need no build of it.
  const selected = SCENARIOS.filter((s) => scenarioNames.includes(s.name));
  // Another build (`--gateway-entry`) runs as it was built: this checkout's dist/ is not used.
  const usesOwnBuild = values["gateway-entry"] === undefined;
  if (!values["no-build"] && usesOwnBuild && selected.some((s) => s.needsBuild !== false)) ensureBuilt();

  if (quick && values.out === undefined) rmSync(out, { force: true });
  const runId = new Date().toISOString().replace(/[:.]/g, "-");
  const started = performance.now();
  const problems: string[] = [];
  appendLine(out, {
    type: "run",
    runId,
    startedAt: new Date().toISOString(),
    quick,
    command: `npm run bench --${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}`,
    options: { scenarios: scenarioNames, targets, workers },
    machine: machineInfo(openFiles),
    loadAverage: loadAverage(),
  });
  const loadgen = await LoadGen.start(workers);
  const context: ScenarioContext = {
    quick,
    runId,
    loadgen,
    targets,
    idleConnections:
      values["idle-connections"] === undefined ? undefined : Number(values["idle-connections"]),
    producerPhases: values["producer-phases"] === undefined ? undefined : Number(values["producer-phases"]),
    fixedRates: values.rates === undefined ? undefined : values.rates.split(",").map(Number),
    agentPaths,
    agentUpstreamMs,
    compareEntry: values["compare-entry"],
    stepSeconds: values["step-seconds"] === undefined ? undefined : Number(values["step-seconds"]),
    targetOptions: {
      ...(values.profile ? { profileDir: join(REPO_ROOT, "bench/results/profiles") } : {}),
      ...(values["gateway-entry"] ? { gatewayEntry: values["gateway-entry"] } : {}),
    },
    record: (scenario, target, params, data) =>
      appendLine(out, {
        type: "result",
        runId,
        scenario,
        target,
        params,
        data,
        at: new Date().toISOString(),
      }),
    log: (line) => console.log(`  ${line}`),
    problem: (text) => {
      problems.push(text);
      console.log(`  PROBLEM: ${text}`);
    },
  };
  try {
    for (const scenario of selected) {
      const scenarioStarted = performance.now();
      console.log(`▶ ${scenario.name}: ${scenario.title}`);
      try {
        await scenario.run(context);
      } catch (error) {
        context.problem(`${scenario.name} crashed: ${(error as Error)?.stack ?? error}`);
        await loadgen.closeConnections().catch(() => {});
        await stopAll();
      }
      console.log(`  (${Math.round((performance.now() - scenarioStarted) / 100) / 10} s)`);
    }
  } finally {
    await loadgen.terminate();
    await stopAll();
  }
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  appendLine(out, {
    type: "end",
    runId,
    finishedAt: new Date().toISOString(),
    seconds,
    ok: problems.length === 0,
    problems,
    loadAverage: loadAverage(),
  });
  if (!values["no-render"]) {
    // A quick run renders too (so the renderer cannot rot), but never over the committed BENCHMARKS.md;
    // nor does a comparison (fixed rates, another build).
    const comparison = values.rates !== undefined || values["gateway-entry"] !== undefined;
    const rendered =
      quick || comparison ? join(tmpdir(), "sse-bench-partial.md") : join(REPO_ROOT, "BENCHMARKS.md");
    try {
      // A partial run (`--only`) adds or replaces its own sections: the page stays rendered from the
      // latest full run, each section from the latest run that measured it (see render.ts).
      renderFile(out, rendered, quick || values.only === undefined ? runId : undefined);
    } catch (error) {
      problems.push(`render failed: ${(error as Error)?.stack ?? error}`);
    }
  }
  console.log(
    `\n${problems.length === 0 ? "OK" : `FAILED (${problems.length} problems)`} in ${seconds} s; results: ${out}`,
  );
  for (const text of problems) console.log(`  - ${text.split("\n")[0]}`);
  return problems.length === 0 ? 0 : 1;
}

process.on("exit", killAllNow);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping everything the harness started …`);
    stopAll().finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    stopAll().finally(() => process.exit(2));
  },
);
