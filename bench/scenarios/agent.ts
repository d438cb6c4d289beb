/**
 * Agent path: one 200-token run of the OpenAI-compatible fixture (which writes every frame at once),
 * timed on every path a client can take to it, in rotating order so drift in the machine's load hits
 * each alike:
 *
 *   direct                the fixture read with raw HTTP: the floor
 *   sdk                   the openai SDK reading the fixture (what the gateway's runner pays itself)
 *   sdk-responses-direct  the SDK's `responses.create` reading the fixture's Responses stream
 *   native                `POST /api/v1/agent/stream`, raw HTTP (recorded as `gateway`)
 *   chat                  `POST /v1/chat/completions` (stream), raw HTTP
 *   responses             `POST /v1/responses` (stream), raw HTTP
 *   ui-chat               `POST /api/v1/chat` (the AI SDK's UI message stream), raw HTTP
 *   sdk-chat              the SDK's `chat.completions.create` with the gateway's /v1 as its baseURL
 *   sdk-responses         the SDK's `responses.create` through the gateway
 *
 * The gateway always calls the fixture with the SDK's Chat Completions (OPENAI_API=chat). The figures:
 * added time to first token against the fixture read the same way (raw: `direct`; the SDK: the same
 * SDK call on the fixture), and beyond the SDK's own cost (against `sdk`). A build without the doors
 * (`--gateway-entry` of an older commit) runs the paths it has.
 */
import http from "node:http";
import OpenAI from "openai";
import { responsesEvents } from "../../test/fixtures/openai-scripts.js";
import { startOpenAIFixture } from "../../test/fixtures/openai-server.js";
import type { ScenarioContext } from "../lib/context.js";
import { startTarget } from "../targets/index.js";
import {
  AGENT_PATHS,
  type AgentPath,
  CHAT_CHUNKS,
  type Format,
  median,
  NATIVE_EVENTS,
  quantile,
  REQUEST_BODIES,
  RESPONSES_EVENTS,
  r3,
  sdkChat,
  sdkResponses,
  type Timing,
  timeStream,
  UI_MESSAGES,
} from "./agent-read.js";
import { RedisTrace, type TraceStages, traceMedians } from "./agent-trace.js";

/** Paths that do not go through the gateway. */
const FIXTURE_PATHS: readonly AgentPath[] = ["direct", "sdk", "sdk-responses-direct"];
/** Paths through the doors: absent from builds before them. */
const DOOR_PATHS: readonly AgentPath[] = ["chat", "responses", "ui-chat", "sdk-chat", "sdk-responses"];

/** What each gateway path is compared with when read the same way (raw HTTP, or the same SDK call). */
const SAME_READ_BASELINE: Partial<Record<AgentPath, AgentPath>> = {
  native: "direct",
  chat: "direct",
  responses: "direct",
  "ui-chat": "direct",
  "sdk-chat": "sdk",
  "sdk-responses": "sdk-responses-direct",
};

interface PathSummary {
  headersMs: number;
  firstTokenMs: number;
  p90FirstTokenMs: number;
  totalMs: number;
  perTokenMs: number;
  /** Request sent → the upstream request (with its body) at the fixture: the gateway's work before the model. */
  upstreamMs: number;
}

interface DoorFigures {
  path: AgentPath;
  /** The path read the same way on the fixture (raw HTTP, or the same SDK call). */
  baseline: AgentPath;
  addedFirstTokenMs: number;
  /** Against the openai SDK reading the fixture (`sdk`): issue 18's measure. */
  addedBeyondSdkFirstTokenMs: number;
  addedPerTokenMs: number;
  /** Of the added time to first token: before the upstream request reached the fixture, and after. */
  addedBeforeUpstreamMs: number;
  addedAfterUpstreamMs: number;
}

/** Runs per gateway path with MONITOR on (the stage breakdown). */
const TRACED_RUNS = 30;

function summarize(list: Timing[], tokenCount: number): PathSummary {
  return {
    headersMs: r3(median(list.map((s) => s.headersMs))),
    firstTokenMs: r3(median(list.map((s) => s.firstTokenMs))),
    p90FirstTokenMs: r3(
      quantile(
        list.map((s) => s.firstTokenMs),
        0.9,
      ),
    ),
    totalMs: r3(median(list.map((s) => s.totalMs))),
    perTokenMs: r3(median(list.map((s) => (s.totalMs - s.firstTokenMs) / Math.max(1, tokenCount - 1)))),
    upstreamMs: r3(median(list.map((s) => s.upstreamMs))),
  };
}

function figures(
  path: AgentPath,
  summaries: Partial<Record<AgentPath, PathSummary>>,
  tokenCount: number,
): DoorFigures | null {
  const baseline = SAME_READ_BASELINE[path];
  const own = summaries[path];
  const base = baseline ? summaries[baseline] : undefined;
  const sdk = summaries.sdk;
  if (!baseline || !own || !base || !sdk) return null;
  const before = own.upstreamMs - base.upstreamMs;
  return {
    path,
    baseline,
    addedFirstTokenMs: r3(own.firstTokenMs - base.firstTokenMs),
    addedBeyondSdkFirstTokenMs: r3(own.firstTokenMs - sdk.firstTokenMs),
    addedPerTokenMs: r3((own.totalMs - base.totalMs) / tokenCount),
    addedBeforeUpstreamMs: r3(before),
    addedAfterUpstreamMs: r3(own.firstTokenMs - base.firstTokenMs - before),
  };
}

/** Whether the gateway has the doors: an empty body is refused (400) by a build with them, 404 without. */
async function hasDoors(base: string): Promise<boolean> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  await res.arrayBuffer();
  return res.status !== 404;
}

export const agentScenario = {
  name: "agent",
  title: "Agent path: the native endpoint and each front door vs reading the fixture directly",
  async run(context: ScenarioContext) {
    if (!context.targets.includes("gateway")) return;
    const runs = context.quick ? 8 : 100;
    const warmup = context.quick ? 2 : 20;
    const tokenCount = context.quick ? 20 : 200;
    const tokens = Array.from({ length: tokenCount }, (_, i) => ` t${i}`);
    const expected = tokens.join("");
    const usage = {
      input_tokens: 1,
      output_tokens: tokenCount,
      total_tokens: tokenCount + 1,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens_details: { reasoning_tokens: 0 },
    };
    const answerAfterMs = context.agentUpstreamMs;
    const responsesScript = { events: responsesEvents({ text: tokens, usage }), delayMs: 0, answerAfterMs };
    const fixture = await startOpenAIFixture();
    // When each upstream request (its body read) reaches the fixture, in this process's clock.
    let upstreamAt = -1;
    const push = fixture.requests.push.bind(fixture.requests);
    fixture.requests.push = (...items) => {
      upstreamAt = performance.now();
      // Only the moment matters: the bodies of thousands of runs are not kept.
      fixture.requests.length = 0;
      return push(...items);
    };
    const target = await startTarget("gateway", {
      ...context.targetOptions,
      gatewayEnv: { OPENAI_API_KEY: "bench-key", OPENAI_BASE_URL: fixture.url },
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const gateway = `http://${target.host}:${target.port}`;
    try {
      const doors = await hasDoors(gateway);
      const wanted = context.agentPaths ?? AGENT_PATHS;
      const selected = wanted.filter((path) => doors || !DOOR_PATHS.includes(path));
      if (selected.length < wanted.length) context.log("this build has no front doors: native path only");
      const direct = new OpenAI({ apiKey: "bench-key", baseURL: fixture.url, maxRetries: 0 });
      // Open mode: the SDK's API key is sent and not checked.
      const viaGateway = new OpenAI({ apiKey: "bench-key", baseURL: `${gateway}/v1`, maxRetries: 0 });
      const at = () => upstreamAt;
      const raw = (url: string, body: string, format: Format) => () =>
        timeStream(agent, new URL(url), body, format, at);
      let chats = 0;
      const paths: Record<AgentPath, { run: () => Promise<Timing>; responsesUpstream?: boolean }> = {
        direct: { run: raw(`${fixture.url}/chat/completions`, REQUEST_BODIES.chat, CHAT_CHUNKS) },
        sdk: { run: () => sdkChat(direct, at) },
        "sdk-responses-direct": { run: () => sdkResponses(direct, at), responsesUpstream: true },
        native: { run: raw(`${gateway}/api/v1/agent/stream`, REQUEST_BODIES.native, NATIVE_EVENTS) },
        chat: { run: raw(`${gateway}/v1/chat/completions`, REQUEST_BODIES.chat, CHAT_CHUNKS) },
        responses: { run: raw(`${gateway}/v1/responses`, REQUEST_BODIES.responses, RESPONSES_EVENTS) },
        "ui-chat": {
          run: () =>
            timeStream(
              agent,
              new URL(`${gateway}/api/v1/chat`),
              REQUEST_BODIES.ui(`bench-chat-${context.runId}-${chats++}`),
              UI_MESSAGES,
              at,
            ),
        },
        "sdk-chat": { run: () => sdkChat(viaGateway, at) },
        "sdk-responses": { run: () => sdkResponses(viaGateway, at) },
      };
      const samples = new Map<AgentPath, Timing[]>(selected.map((path) => [path, []]));
      for (let i = 0; i < warmup + runs; i++) {
        for (let k = 0; k < selected.length; k++) {
          const path = selected[(i + k) % selected.length]!;
          const { run, responsesUpstream } = paths[path];
          fixture.script(responsesUpstream ? responsesScript : { tokens, delayMs: 0, answerAfterMs });
          upstreamAt = -1;
          const timing = await run();
          if (timing.text !== expected) {
            context.problem(
              `agent ${path}: ${timing.tokens} token frames carried ${timing.text.length} of ${expected.length} characters (or other text)`,
            );
          }
          if (i >= warmup) samples.get(path)!.push(timing);
        }
      }
      // Then a few runs per gateway path with Redis's MONITOR on, for where the first token's time goes.
      const traced = selected.filter((path) => !FIXTURE_PATHS.includes(path));
      const traces = new Map<AgentPath, TraceStages[]>(traced.map((path) => [path, []]));
      const redis = target.redis;
      if (redis && traced.length > 0) {
        const trace = await RedisTrace.start(redis.url);
        try {
          for (let i = 0; i < (context.quick ? 3 : TRACED_RUNS); i++) {
            for (let k = 0; k < traced.length; k++) {
              const path = traced[(i + k) % traced.length]!;
              fixture.script({ tokens, delayMs: 0, answerAfterMs });
              upstreamAt = -1;
              const stages = await trace.traceRun(paths[path].run);
              if (stages) traces.get(path)!.push(stages);
            }
          }
        } finally {
          await trace.stop();
        }
      }
      const summaries: Partial<Record<AgentPath, PathSummary>> = {};
      for (const [path, list] of samples) summaries[path] = summarize(list, tokenCount);
      const d = summaries.direct;
      const k = summaries.sdk;
      const g = summaries.native;
      const doorFigures = selected.flatMap((path) => figures(path, summaries, tokenCount) ?? []);
      const data = {
        // The native path as every earlier run recorded it (history, targets row).
        direct: d,
        sdk: k,
        gateway: g,
        ...(d && g
          ? {
              addedFirstTokenMs: r3(g.firstTokenMs - d.firstTokenMs),
              addedPerTokenMs: r3((g.totalMs - d.totalMs) / tokenCount),
              tokensPerSecondGateway: Math.round(tokenCount / ((g.totalMs - g.firstTokenMs) / 1000)),
            }
          : {}),
        ...(k && g ? { addedBeyondSdkFirstTokenMs: r3(g.firstTokenMs - k.firstTokenMs) } : {}),
        paths: summaries,
        doors: doorFigures,
        trace: Object.fromEntries(
          [...traces].filter(([, list]) => list.length > 0).map(([path, list]) => [path, traceMedians(list)]),
        ),
      };
      for (const f of doorFigures) {
        const s = summaries[f.path]!;
        context.log(
          `${f.path.padEnd(13)} head ${s.headersMs} ms, first token ${s.firstTokenMs} ms (+${f.addedFirstTokenMs} vs ${f.baseline}, ` +
            `+${f.addedBeyondSdkFirstTokenMs} beyond the SDK; upstream reached +${f.addedBeforeUpstreamMs}), whole ${s.totalMs} ms`,
        );
      }
      for (const [path, t] of Object.entries(data.trace)) {
        context.log(
          `${path.padEnd(13)} traced (${t.runs}): ${t.chatLookupMs === undefined ? "" : `chat looked up ${t.chatLookupMs}, `}admitted ${t.admittedMs}, created ${t.createdMs}, ` +
            `upstream ${t.upstreamMs}, head ${t.headMs}, subscribed ${t.subscribedMs}, token appended ${t.appendedMs}, at the client ${t.firstTokenMs} ms`,
        );
      }
      if (d && k) {
        context.log(
          `fixture: raw ${d.firstTokenMs} ms, openai SDK ${k.firstTokenMs} ms to the first token (upstream reached after ${d.upstreamMs} / ${k.upstreamMs} ms)`,
        );
      }
      context.record(
        "agent",
        "gateway",
        { runs, warmup, tokens: tokenCount, paths: selected, upstreamMs: answerAfterMs },
        data,
      );
    } finally {
      agent.destroy();
      await target.stop();
      await fixture.close();
    }
  },
};
