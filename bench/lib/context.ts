/** What every scenario receives from the runner, and the JSON lines it writes. */
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { LoadGen } from "../loadgen/pool.js";
import type { AgentPath } from "../scenarios/agent-read.js";
import type { TargetName, TargetOptions } from "../targets/index.js";
import type { MachineInfo } from "./measure.js";

export interface RunLine {
  type: "run";
  runId: string;
  startedAt: string;
  quick: boolean;
  command: string;
  options: Record<string, unknown>;
  machine: MachineInfo;
  /** The machine's 1, 5 and 15-minute load averages when the run started (absent before the seventh run). */
  loadAverage?: number[];
}

export interface EndLine {
  type: "end";
  runId: string;
  finishedAt: string;
  seconds: number;
  ok: boolean;
  problems: string[];
  /** Load averages when the run ended. */
  loadAverage?: number[];
}

export interface ResultLine {
  type: "result";
  runId: string;
  scenario: string;
  target: string;
  params: Record<string, unknown>;
  data: Record<string, unknown>;
  at: string;
}

export type Line = RunLine | EndLine | ResultLine;

export interface ScenarioContext {
  readonly quick: boolean;
  readonly runId: string;
  readonly loadgen: LoadGen;
  /** The targets selected for this run (scenarios use those that apply to them). */
  readonly targets: readonly TargetName[];
  readonly targetOptions: TargetOptions;
  /** Overrides the idle scenario's connection count. */
  readonly idleConnections: number | undefined;
  /** Overrides the fan-out producer's phase groups (1: every session sends at the same instant). */
  readonly producerPhases: number | undefined;
  /** Fan-out runs these rates as fixed steps (for before/after comparisons) instead of its ramp. */
  readonly fixedRates: readonly number[] | undefined;
  /** The agent scenario's paths (default all). */
  readonly agentPaths: readonly AgentPath[] | undefined;
  /** How long the agent scenario's fixture waits before it answers (0: at once, the floor). */
  readonly agentUpstreamMs: number;
  /** Another build's entry point, which `agent-ab` runs beside this one (`--compare-entry`). */
  readonly compareEntry: string | undefined;
  /** Overrides the measured window of each fixed-rate step, in seconds. */
  readonly stepSeconds: number | undefined;
  record(
    scenario: string,
    target: string,
    params: Record<string, unknown>,
    data: Record<string, unknown>,
  ): void;
  log(line: string): void;
  /** A contract violation (loss, duplicates, reordering, a crash): the run exits non-zero. */
  problem(text: string): void;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** false: the scenario runs the gateway's code in the harness's own process, so dist/ need not be built. */
  readonly needsBuild?: boolean;
  run(context: ScenarioContext): Promise<void>;
}

export function appendLine(file: string, line: Line): void {
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}

/** A short random tag, so session ids never collide between scenarios or runs. */
export function tag(prefix: string): string {
  return `${prefix}${Math.random().toString(36).slice(2, 7)}`;
}

/** scenario → target → result (for scenarios with several results per target the key adds the params). */
export type Results = Map<string, Map<string, ResultLine>>;
