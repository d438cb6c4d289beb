/**
 * Dashboard: C=50 connections each watching the same 200 sessions, of which 20 stream at 30 tokens/s
 * (a wall of agents, a few of them busy). What it shows: the cost of many quiet sessions per
 * connection, and the latency of the busy ones.
 */
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { startTarget } from "../targets/index.js";
import { describeStep, openStreams, runStep, type StreamShape } from "./streams.js";

const TOKENS_PER_SECOND_PER_SESSION = 30;

export const dashboardScenario = {
  name: "dashboard",
  title: "Dashboard: 50 connections × 200 sessions, 20 streaming at 30 tokens/s",
  async run(context: ScenarioContext) {
    const shape: StreamShape = context.quick
      ? { connections: 5, sessionsPerConnection: 40, sessions: 40, activeSessions: 5, tickMs: 20 }
      : { connections: 50, sessionsPerConnection: 200, sessions: 200, activeSessions: 20, tickMs: 20 };
    const timing = context.quick
      ? { warmupMs: 300, measureMs: 1_000, drainTimeoutMs: 10_000, strict: true }
      : { warmupMs: 2_000, measureMs: 20_000, drainTimeoutMs: 15_000 };
    const rate = shape.activeSessions! * TOKENS_PER_SECOND_PER_SESSION;
    for (const name of context.targets) {
      const target = await startTarget(name, context.targetOptions);
      try {
        const streams = await openStreams(target, context.loadgen, shape, tag("d"));
        const step = await runStep(streams, context.loadgen, rate, timing);
        context.log(describeStep(name, step));
        for (const text of step.correctness) context.problem(`dashboard ${name}: ${text}`);
        context.record(
          "dashboard",
          name,
          { ...shape, tokensPerSecondPerSession: TOKENS_PER_SECOND_PER_SESSION, ...timing },
          { connect: streams.open, step },
        );
      } finally {
        await context.loadgen.closeConnections();
        await target.stop();
      }
    }
  },
};
