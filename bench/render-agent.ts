/** BENCHMARKS.md's "Agent path": its tables, its reading, and its row of the targets table. */
import type { ResultLine } from "./lib/context.js";
import type { AgentPath } from "./scenarios/agent-read.js";

interface PathSummary {
  headersMs: number;
  firstTokenMs: number;
  p90FirstTokenMs?: number;
  totalMs: number;
  perTokenMs: number;
  upstreamMs?: number;
}

interface DoorFigures {
  path: AgentPath;
  baseline: AgentPath;
  addedFirstTokenMs: number;
  addedBeyondSdkFirstTokenMs: number;
  addedPerTokenMs: number;
  addedBeforeUpstreamMs: number;
  addedAfterUpstreamMs: number;
}

interface TraceStages {
  runs: number;
  chatLookupMs?: number;
  admittedMs: number;
  createdMs: number;
  upstreamMs: number;
  headMs: number;
  subscribedMs: number;
  appendedMs: number;
  firstTokenMs: number;
}

/** What a run recorded: `paths` and `doors` since the doors were measured; the rest in every run. */
interface AgentData {
  direct?: PathSummary;
  sdk?: PathSummary;
  gateway?: PathSummary;
  addedFirstTokenMs?: number;
  addedBeyondSdkFirstTokenMs?: number;
  addedPerTokenMs?: number;
  paths?: Partial<Record<AgentPath, PathSummary>>;
  doors?: DoorFigures[];
  /** Stage medians of the runs traced with Redis's MONITOR on (since the doors were measured). */
  trace?: Partial<Record<AgentPath, TraceStages>>;
}

/** Issue 18's target: at most this much added to the first token beyond the openai SDK's own cost. */
const TARGET_BEYOND_SDK_MS = 1;

const LABELS: Record<AgentPath, [string, string]> = {
  direct: ["the fixture", "raw HTTP"],
  sdk: ["the fixture", "openai SDK `chat.completions` (as the gateway's runner reads it)"],
  "sdk-responses-direct": ["the fixture's Responses stream", "openai SDK `responses`"],
  native: ["gateway `POST /api/v1/agent/stream` (native)", "raw HTTP"],
  chat: ["gateway `POST /v1/chat/completions`", "raw HTTP"],
  responses: ["gateway `POST /v1/responses`", "raw HTTP"],
  "ui-chat": ["gateway `POST /api/v1/chat` (AI SDK UI message stream)", "raw HTTP"],
  "sdk-chat": ["gateway `/v1` as the SDK's baseURL", "openai SDK `chat.completions`"],
  "sdk-responses": ["gateway `/v1` as the SDK's baseURL", "openai SDK `responses`"],
};

const verdict = (ok: boolean) => (ok ? "✅ met" : "❌ missed");

/** Every path, native first; older runs recorded only the fixture, the SDK and the native endpoint. */
function pathsOf(d: AgentData): Array<[AgentPath, PathSummary]> {
  const paths = d.paths ?? { direct: d.direct, sdk: d.sdk, native: d.gateway };
  return (Object.keys(LABELS) as AgentPath[]).flatMap((path) => {
    const summary = paths[path];
    return summary ? [[path, summary] as [AgentPath, PathSummary]] : [];
  });
}

/** The native endpoint's figures as every run recorded them, beside the doors' (since they were measured). */
function doorsOf(d: AgentData): DoorFigures[] {
  if (d.doors) return d.doors;
  if (d.addedFirstTokenMs === undefined || d.addedBeyondSdkFirstTokenMs === undefined) return [];
  return [
    {
      path: "native",
      baseline: "direct",
      addedFirstTokenMs: d.addedFirstTokenMs,
      addedBeyondSdkFirstTokenMs: d.addedBeyondSdkFirstTokenMs,
      addedPerTokenMs: d.addedPerTokenMs ?? Number.NaN,
      addedBeforeUpstreamMs: Number.NaN,
      addedAfterUpstreamMs: Number.NaN,
    },
  ];
}

const ms = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? "–" : String(value));
const signed = (value: number) => (Number.isNaN(value) ? "–" : `${value >= 0 ? "+" : ""}${value}`);

export function agentSection(line: ResultLine): string {
  const d = line.data as AgentData;
  const p = line.params;
  const doors = doorsOf(d);
  const out = [
    "## Agent path",
    "",
    `${p.runs} runs (after ${p.warmup} warm-up) of ${p.tokens} tokens each on every path, in rotating order; the fixture writes every frame at once, and the gateway reads it with the openai SDK's Chat Completions whatever the door. Medians (first token: median and p90). "Upstream" is when the model's request, its body read, reached the fixture.`,
    "",
    "| to | read with | response head ms | first token ms (p90) | whole stream ms | ms per token | upstream ms |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const [path, s] of pathsOf(d)) {
    const [to, how] = LABELS[path];
    const first =
      s.p90FirstTokenMs === undefined ? ms(s.firstTokenMs) : `${s.firstTokenMs} (${s.p90FirstTokenMs})`;
    out.push(
      `| ${to} | ${how} | ${s.headersMs} | ${first} | ${s.totalMs} | ${s.perTokenMs} | ${ms(s.upstreamMs)} |`,
    );
  }
  if (doors.length === 0) return out.join("\n");
  out.push(
    "",
    `Added by the gateway to the first token, against the fixture read the same way (raw HTTP: the fixture read directly; an SDK call: the same call on the fixture), and beyond the openai SDK's own cost (against the SDK reading the fixture: the target, ≤ ${TARGET_BEYOND_SDK_MS} ms), split at the moment the upstream request reached the fixture:`,
    "",
    "| path | vs the fixture read the same way | beyond the SDK's own cost | of which before the upstream request / after | per token | target |",
    "| --- | --- | --- | --- | --- | --- |",
  );
  for (const f of doors) {
    const [to, how] = LABELS[f.path];
    out.push(
      `| ${to}, ${how} | ${signed(f.addedFirstTokenMs)} | **${signed(f.addedBeyondSdkFirstTokenMs)}** | ${signed(f.addedBeforeUpstreamMs)} / ${signed(f.addedAfterUpstreamMs)} | ${signed(f.addedPerTokenMs)} | ${verdict(f.addedBeyondSdkFirstTokenMs <= TARGET_BEYOND_SDK_MS)} |`,
    );
  }
  out.push(...traceTable(d));
  return out.join("\n");
}

function traceTable(d: AgentData): string[] {
  const traced = (Object.keys(LABELS) as AgentPath[]).flatMap((path) => {
    const t = d.trace?.[path];
    return t ? [[path, t] as [AgentPath, TraceStages]] : [];
  });
  if (traced.length === 0) return [];
  const runs = traced[0]![1].runs;
  const out = [
    "",
    `Where the first token's time goes: ${runs} more runs per gateway path with Redis's MONITOR on (which slows Redis a little: these runs are not the timed ones above), each Redis command placed on the client's clock (calibrated by an ECHO's round trip). Medians, ms from the request being sent: the admission's scripts reach Redis; the session's creation runs (its \`running\` status written); the upstream request reaches the fixture; the response head; the stream's reader subscribes to the session's notices; the first token's append runs in Redis; the first token reaches the client.`,
    "",
    "| path | read with | admitted | created | upstream | head | subscribed | token appended | first token |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const [path, t] of traced) {
    const [to, how] = LABELS[path];
    const admitted =
      t.chatLookupMs === undefined ? ms(t.admittedMs) : `${t.admittedMs} (chat looked up ${t.chatLookupMs})`;
    out.push(
      `| ${to} | ${how} | ${admitted} | ${ms(t.createdMs)} | ${ms(t.upstreamMs)} | ${ms(t.headMs)} | ${ms(t.subscribedMs)} | ${ms(t.appendedMs)} | ${ms(t.firstTokenMs)} |`,
    );
  }
  const k = d.paths?.sdk;
  if (k?.upstreamMs !== undefined) {
    out.push(
      `| the fixture (timed runs) | openai SDK \`chat.completions\` | | | ${k.upstreamMs} | ${k.headersMs} | | | ${k.firstTokenMs} |`,
    );
  }
  return out;
}

const r3 = (value: number) => Math.round(value * 1000) / 1000;

export function agentReading(line: ResultLine): string[] {
  const d = line.data as AgentData;
  const g = d.paths?.native ?? d.gateway;
  if (!g) return [];
  const t = d.trace?.native;
  const k = d.paths?.sdk ?? d.sdk;
  const out = t
    ? [
        `- The native endpoint, traced: the admission reached Redis ${t.admittedMs} ms after the request was sent, the upstream`,
        `  request reached the fixture at ${t.upstreamMs} ms, the session's creation ran at ${t.createdMs}; the head came at ${t.headMs},`,
        `  the stream's reader subscribed at ${t.subscribedMs}, the first token's append ran at ${t.appendedMs} and the token reached`,
        `  the client at ${t.firstTokenMs}. ${
          t.headMs >= t.createdMs
            ? "The head waits for the session to exist (its creation, then its `@sessions` entry: two script calls in turn)"
            : "The head goes out before the session's creation"
        }, and the run's first append waits for this stream's reader to join, so`,
        "  its first batch is handed to it locally.",
      ]
    : [
        `- The native endpoint's response head came after ${g.headersMs} ms and the first token after ${g.firstTokenMs} ms: the`,
        "  upstream request through the openai SDK, then the token's append round trip to Redis, after which the run",
        "  hands it to the local hub directly and the stream flushes it on the next turn.",
      ];
  const direct = d.paths?.direct ?? d.direct;
  if (k?.upstreamMs !== undefined && direct?.upstreamMs !== undefined) {
    out.push(
      `- The SDK alone reached the fixture after ${k.upstreamMs} ms (raw HTTP: ${direct.upstreamMs}) and had its first token`,
      `  ${r3(k.firstTokenMs - k.upstreamMs)} ms later (raw: ${r3(direct.firstTokenMs - direct.upstreamMs)}); the gateway pays that inside, plus one HTTP hop each way,`,
      "  its admission and the session's creation, and the first append before the token leaves.",
    );
  }
  const doors = (d.doors ?? []).filter((f) => f.path !== "native");
  if (doors.length > 0) {
    const native = (d.doors ?? []).find((f) => f.path === "native");
    const worst = doors.reduce((a, b) =>
      b.addedBeyondSdkFirstTokenMs > a.addedBeyondSdkFirstTokenMs ? b : a,
    );
    out.push(
      `- The doors add ${Math.min(...doors.map((f) => f.addedBeyondSdkFirstTokenMs))} to ${worst.addedBeyondSdkFirstTokenMs} ms beyond the SDK's own cost` +
        `${native ? ` (native: ${native.addedBeyondSdkFirstTokenMs})` : ""}; the most on ${LABELS[worst.path][0]} read with ${LABELS[worst.path][1]},` +
        ` ${worst.addedBeforeUpstreamMs} ms of it before the upstream request. Every door starts its run as the native`,
      "  endpoint does (both admissions, the session's creation, the reader joined before the first append); the AI SDK",
      "  door also looks the chat up before and records it as the chat's active run after the creation, before the head.",
    );
  }
  return out;
}

/** The targets table's agent row: every path's time beyond the SDK's own cost, met only if each is. */
export function agentTargetFigure(line: ResultLine | undefined): [string, boolean | undefined] {
  if (!line) return ["–", undefined];
  const doors = doorsOf(line.data as AgentData);
  if (doors.length === 0) return ["–", undefined];
  const figure = doors
    .map(
      (f) =>
        `${f.path} ${signed(f.addedBeyondSdkFirstTokenMs)} ms (${signed(f.addedFirstTokenMs)} vs ${f.baseline})`,
    )
    .join("; ");
  return [figure, doors.every((f) => f.addedBeyondSdkFirstTokenMs <= TARGET_BEYOND_SDK_MS)];
}
