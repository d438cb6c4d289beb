/**
 * Agent path, two builds side by side (`--compare-entry PATH` against this build or `--gateway-entry`):
 * both gateways run at once (each with its own Redis), and every iteration times one run of each
 * through the native endpoint (`POST /api/v1/agent/stream`), in alternating order, plus the openai SDK
 * reading the fixture (the SDK's own cost). A pair of runs a few milliseconds apart meets the same
 * machine, so the median of the per-pair differences shows a change far smaller than the spread
 * between whole runs (±0.3 ms on a 2-core machine). The fixture runs on its own thread (fixture-thread.ts).
 */
import http from "node:http";
import { Worker } from "node:worker_threads";
import OpenAI from "openai";
import type { ScenarioContext } from "../lib/context.js";
import { startTarget, type Target } from "../targets/index.js";
import { median, NATIVE_EVENTS, REQUEST_BODIES, r3, sdkChat, type Timing, timeStream } from "./agent-read.js";

async function startFixtureThread(
  tokens: string[],
  answerAfterMs: number,
): Promise<{ url: string; worker: Worker }> {
  const worker = new Worker(new URL("../lib/fixture-thread.mjs", import.meta.url), {
    workerData: { tokens, answerAfterMs },
  });
  const url = await new Promise<string>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return { url, worker };
}

export const agentAbScenario = {
  name: "agent-ab",
  title: "Agent path: two builds side by side, runs alternated one by one (--compare-entry)",
  async run(context: ScenarioContext) {
    const own = context.targetOptions.gatewayEntry ?? "dist/server.js";
    // A quick run (CI) without another build compares this one with itself: the harness is exercised.
    const other = context.compareEntry ?? (context.quick ? own : undefined);
    if (!other) {
      context.log("no --compare-entry: nothing to compare");
      return;
    }
    const runs = context.quick ? 20 : 600;
    const warmup = context.quick ? 5 : 50;
    const tokenCount = context.quick ? 20 : 200;
    const tokens = Array.from({ length: tokenCount }, (_, i) => ` t${i}`);
    const expected = tokens.join("");
    const fixture = await startFixtureThread(tokens, context.agentUpstreamMs);
    const builds: Array<{ label: string; entry: string; target: Target | null; timings: Timing[] }> = [
      { label: "this", entry: own, target: null, timings: [] },
      { label: "other", entry: other, target: null, timings: [] },
    ];
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    try {
      for (const build of builds) {
        build.target = await startTarget("gateway", {
          ...context.targetOptions,
          gatewayEntry: build.entry,
          gatewayEnv: { OPENAI_API_KEY: "bench-key", OPENAI_BASE_URL: fixture.url },
        });
      }
      const direct = new OpenAI({ apiKey: "bench-key", baseURL: fixture.url, maxRetries: 0 });
      const sdk: Timing[] = [];
      const noUpstreamMark = () => -1;
      for (let i = 0; i < warmup + runs; i++) {
        const measured = i >= warmup;
        const viaSdk = await sdkChat(direct, noUpstreamMark);
        if (measured) sdk.push(viaSdk);
        const order = i % 2 === 0 ? builds : [...builds].reverse();
        for (const build of order) {
          const { host, port } = build.target!;
          const timing = await timeStream(
            agent,
            new URL(`http://${host}:${port}/api/v1/agent/stream`),
            REQUEST_BODIES.native,
            NATIVE_EVENTS,
            noUpstreamMark,
          );
          if (timing.text !== expected) {
            context.problem(`agent-ab ${build.label}: the stream carried other text than the fixture sent`);
          }
          if (measured) build.timings.push(timing);
        }
      }
      const sdkFirstToken = median(sdk.map((t) => t.firstTokenMs));
      const [mine, theirs] = builds.map((build) => {
        const firstToken = median(build.timings.map((t) => t.firstTokenMs));
        return {
          entry: build.entry,
          firstTokenMs: r3(firstToken),
          beyondSdkMs: r3(firstToken - sdkFirstToken),
          headMs: r3(median(build.timings.map((t) => t.headersMs))),
        };
      });
      const differences = builds[0]!.timings.map(
        (t, i) => t.firstTokenMs - builds[1]!.timings[i]!.firstTokenMs,
      );
      const data = {
        sdkFirstTokenMs: r3(sdkFirstToken),
        this: mine,
        other: theirs,
        // This build's first token minus the other's, pair by pair: negative when this one is faster.
        pairedDifferenceMs: r3(median(differences)),
        shareThisSlower: r3(differences.filter((d) => d > 0).length / differences.length),
      };
      for (const [label, figures] of [
        ["this ", mine!],
        ["other", theirs!],
      ] as const) {
        context.log(
          `${label} ${figures.entry}: first token ${figures.firstTokenMs} ms (${figures.beyondSdkMs} beyond the SDK's ${data.sdkFirstTokenMs}), head ${figures.headMs} ms`,
        );
      }
      context.log(
        `this − other, pair by pair: median ${data.pairedDifferenceMs} ms; this build slower in ${Math.round(data.shareThisSlower * 100)}% of ${runs} pairs`,
      );
      context.record(
        "agent-ab",
        "gateway",
        { runs, warmup, tokens: tokenCount, upstreamMs: context.agentUpstreamMs, fixture: "own thread" },
        data,
      );
    } finally {
      agent.destroy();
      for (const build of builds) await build.target?.stop();
      await fixture.worker.terminate();
    }
  },
};
