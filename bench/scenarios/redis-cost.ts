/**
 * Redis cost: at a fixed append rate, subscribers per session grow (1, 10, 100 connections per
 * session); Redis CPU and commands per delivered event should fall, and the Redis connections of one
 * gateway instance should stay constant. nchan (also on Redis) runs the same steps for contrast.
 */
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { startTarget } from "../targets/index.js";
import { describeStep, openStreams, runStep, type StreamShape } from "./streams.js";

export const redisCostScenario = {
  name: "redis-cost",
  title: "Redis cost per delivered event as subscribers per session grow",
  async run(context: ScenarioContext) {
    const sessions = context.quick ? 5 : 20;
    const fanIns = context.quick ? [1, 4] : [1, 10, 100];
    const rate = context.quick ? 100 : 1_000;
    const timing = context.quick
      ? { warmupMs: 300, measureMs: 1_000, drainTimeoutMs: 10_000, strict: true }
      : { warmupMs: 2_000, measureMs: 5_000, drainTimeoutMs: 15_000 };
    for (const name of context.targets.filter((t) => t !== "raw-node")) {
      const target = await startTarget(name, context.targetOptions);
      try {
        const idleClients = await target.redis!.clients();
        for (const perSession of fanIns) {
          const shape: StreamShape = {
            connections: sessions * perSession,
            sessionsPerConnection: 1,
            sessions,
            tickMs: 50,
          };
          const streams = await openStreams(target, context.loadgen, shape, tag("k"));
          const step = await runStep(streams, context.loadgen, rate, timing);
          const clients = await target.redis!.clients();
          await context.loadgen.closeConnections();
          context.log(
            `${describeStep(name, step)}\n    ${perSession} subscriber(s)/session: Redis ${step.redis?.cpuMicrosPerDelivered} µs CPU and ` +
              `${step.redis?.commandsPerDelivered} commands per delivered event; ${clients.total} Redis connections`,
          );
          for (const text of step.correctness) context.problem(`redis-cost ${name} ×${perSession}: ${text}`);
          context.record(
            "redis-cost",
            name,
            { ...shape, subscribersPerSession: perSession, rate, ...timing },
            { step, redisClients: clients, redisClientsIdle: idleClients },
          );
        }
      } finally {
        await context.loadgen.closeConnections();
        await target.stop();
      }
    }
  },
};
