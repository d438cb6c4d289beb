/**
 * Agent path: `POST /api/v1/agent/stream` with the OpenAI runner pointed at the OpenAI-compatible
 * fixture, which streams as fast as it can; against it, the same fixture read directly. The gateway's
 * cost is the difference: added time to first token (median), and added time per token.
 */
import http from "node:http";
import OpenAI from "openai";
import { startOpenAIFixture } from "../../test/fixtures/openai-server.js";
import type { ScenarioContext } from "../lib/context.js";
import { startTarget } from "../targets/index.js";

interface Timing {
  /** Response head received: the gateway has started the run and opened the stream. */
  headersMs: number;
  firstTokenMs: number;
  totalMs: number;
  tokens: number;
}

/** Sends one streaming request and times the first and last frame that `isToken` accepts. */
function timeStream(
  agent: http.Agent,
  url: URL,
  body: string,
  isToken: (frame: string) => boolean,
  isEnd: (frame: string) => boolean,
): Promise<Timing> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const headersMs = performance.now() - started;
        if (res.statusCode !== 200) {
          reject(new Error(`${url.pathname}: HTTP ${res.statusCode}`));
          res.resume();
          return;
        }
        let rest = "";
        let first = -1;
        let last = -1;
        let tokens = 0;
        let ended = false;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          const now = performance.now();
          const frames = (rest + chunk).split("\n\n");
          rest = frames.pop() ?? "";
          for (const frame of frames) {
            if (isToken(frame)) {
              tokens++;
              if (first < 0) first = now;
              last = now;
            } else if (isEnd(frame)) ended = true;
          }
        });
        res.on("end", () => {
          if (!ended || first < 0) reject(new Error(`${url.pathname}: stream ended without tokens or end`));
          else resolve({ headersMs, firstTokenMs: first - started, totalMs: last - started, tokens });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]!;
}

const r3 = (value: number) => Math.round(value * 1000) / 1000;

export const agentScenario = {
  name: "agent",
  title: "Agent path: gateway vs reading the OpenAI-compatible fixture directly",
  async run(context: ScenarioContext) {
    if (!context.targets.includes("gateway")) return;
    const runs = context.quick ? 8 : 100;
    const warmup = context.quick ? 2 : 20;
    const tokenCount = context.quick ? 20 : 200;
    const tokens = Array.from({ length: tokenCount }, (_, i) => ` t${i}`);
    const fixture = await startOpenAIFixture();
    const target = await startTarget("gateway", {
      ...context.targetOptions,
      gatewayEnv: { OPENAI_API_KEY: "bench-key", OPENAI_BASE_URL: fixture.url },
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    try {
      const direct = (): Promise<Timing> => {
        fixture.script({ tokens, delayMs: 0 });
        const body = JSON.stringify({
          model: "gpt-4o-mini",
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "bench" }],
        });
        return timeStream(
          agent,
          new URL(`${fixture.url}/chat/completions`),
          body,
          (frame) => frame.includes('"delta":{"content":"') && !frame.includes('"content":""'),
          (frame) => frame.startsWith("data: [DONE]"),
        );
      };
      const viaGateway = (): Promise<Timing> => {
        fixture.script({ tokens, delayMs: 0 });
        return timeStream(
          agent,
          new URL(`http://${target.host}:${target.port}/api/v1/agent/stream`),
          JSON.stringify({ message: "bench" }),
          (frame) => frame.includes("\nevent: token\n"),
          (frame) => /\nevent: (done|error|cancelled)\n/.test(frame),
        );
      };
      // The gateway reads the model through the openai SDK, which costs time of its own: the same SDK
      // reading the fixture from here splits the gateway's added time into the SDK's share and the rest.
      const sdk = new OpenAI({ apiKey: "bench-key", baseURL: fixture.url, maxRetries: 0 });
      const viaSdk = async (): Promise<Timing> => {
        fixture.script({ tokens, delayMs: 0 });
        const started = performance.now();
        const stream = await sdk.chat.completions.create({
          model: "gpt-4o-mini",
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "bench" }],
        });
        const headersMs = performance.now() - started;
        let first = -1;
        let last = -1;
        let count = 0;
        for await (const chunk of stream) {
          if (!chunk.choices[0]?.delta?.content) continue;
          const now = performance.now();
          if (first < 0) first = now;
          last = now;
          count++;
        }
        return { headersMs, firstTokenMs: first - started, totalMs: last - started, tokens: count };
      };
      const samples = { direct: [] as Timing[], sdk: [] as Timing[], gateway: [] as Timing[] };
      const order = [
        ["direct", direct],
        ["sdk", viaSdk],
        ["gateway", viaGateway],
      ] as const;
      for (let i = 0; i < warmup + runs; i++) {
        // Rotate the order so drift in the machine's load hits every path alike.
        for (let k = 0; k < order.length; k++) {
          const [name, run] = order[(i + k) % order.length]!;
          const timing = await run();
          if (i >= warmup) samples[name].push(timing);
        }
      }
      const bad = samples.gateway.find((s) => s.tokens !== tokenCount);
      if (bad) context.problem(`agent: the gateway delivered ${bad.tokens} of ${tokenCount} tokens`);
      const summary = (list: Timing[]) => ({
        headersMs: r3(median(list.map((s) => s.headersMs))),
        firstTokenMs: r3(median(list.map((s) => s.firstTokenMs))),
        totalMs: r3(median(list.map((s) => s.totalMs))),
        perTokenMs: r3(median(list.map((s) => (s.totalMs - s.firstTokenMs) / Math.max(1, s.tokens - 1)))),
      });
      const d = summary(samples.direct);
      const k = summary(samples.sdk);
      const g = summary(samples.gateway);
      const data = {
        direct: d,
        sdk: k,
        gateway: g,
        addedFirstTokenMs: r3(g.firstTokenMs - d.firstTokenMs),
        addedBeyondSdkFirstTokenMs: r3(g.firstTokenMs - k.firstTokenMs),
        addedPerTokenMs: r3((g.totalMs - d.totalMs) / tokenCount),
        tokensPerSecondGateway: Math.round(tokenCount / ((g.totalMs - g.firstTokenMs) / 1000)),
      };
      context.log(
        `time to first token: direct ${d.firstTokenMs} ms, openai SDK ${k.firstTokenMs} ms, gateway ${g.firstTokenMs} ms (+${data.addedFirstTokenMs} ms; ` +
          `+${data.addedBeyondSdkFirstTokenMs} ms beyond the SDK; ` +
          `response head after ${g.headersMs} ms); ` +
          `per token +${data.addedPerTokenMs} ms; whole stream ${d.totalMs} vs ${g.totalMs} ms`,
      );
      context.record("agent", "gateway", { runs, warmup, tokens: tokenCount }, data);
    } finally {
      agent.destroy();
      await target.stop();
      await fixture.close();
    }
  },
};
