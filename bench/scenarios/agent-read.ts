/**
 * How the agent scenario reads one run's stream and times it: raw HTTP with each wire format's own
 * token test (the fixture's and the /v1 door's chat chunks, the native `event: token`, the Responses
 * door's `response.output_text.delta`, the AI SDK door's `text-delta`), or the `openai` SDK as its
 * user calls it. Frames are kept as they arrive and decoded only once the stream has ended, so a
 * path's timing never includes the checking of its own text.
 */
import http from "node:http";
import type OpenAI from "openai";

/** Every path the agent scenario times (see agent.ts). */
export const AGENT_PATHS = [
  "direct",
  "sdk",
  "sdk-responses-direct",
  "native",
  "chat",
  "responses",
  "ui-chat",
  "sdk-chat",
  "sdk-responses",
] as const;
export type AgentPath = (typeof AGENT_PATHS)[number];

export interface Timing {
  /** Response head received (the SDK: its `create()` resolved). */
  headersMs: number;
  firstTokenMs: number;
  totalMs: number;
  /** Frames (or SDK chunks) that carried text. */
  tokens: number;
  /** The text they carried, joined: checked against what the fixture sent. */
  text: string;
  /** When the upstream request reached the fixture, from the start; -1 when it did not go there. */
  upstreamMs: number;
}

/** One wire format as a raw reader sees it. */
export interface Format {
  isToken(frame: string): boolean;
  isEnd(frame: string): boolean;
  /** The text a token frame carries (decoded after the stream). */
  textOf(frame: string): string;
}

const dataOf = (frame: string): unknown => {
  const line = frame.split("\n").find((l) => l.startsWith("data: "));
  return line === undefined ? undefined : JSON.parse(line.slice(6));
};

/** Chat Completions chunks: the fixture's own and the /v1 door's. */
export const CHAT_CHUNKS: Format = {
  isToken: (frame) => frame.includes('"delta":{"content":"') && !frame.includes('"content":""'),
  isEnd: (frame) => frame.includes("data: [DONE]"),
  textOf: (frame) =>
    (dataOf(frame) as { choices: Array<{ delta: { content: string } }> }).choices[0]!.delta.content,
};

/** The gateway's own stream (`POST /api/v1/agent/stream`). */
export const NATIVE_EVENTS: Format = {
  isToken: (frame) => frame.includes("\nevent: token\n"),
  isEnd: (frame) => /\nevent: (done|error|cancelled)\n/.test(frame),
  textOf: (frame) => (dataOf(frame) as { content: string }).content,
};

/** The Responses door: `event: <type>` frames, ended by `response.completed`. */
export const RESPONSES_EVENTS: Format = {
  isToken: (frame) => frame.includes("event: response.output_text.delta\n"),
  isEnd: (frame) => frame.includes("event: response.completed\n"),
  textOf: (frame) => (dataOf(frame) as { delta: string }).delta,
};

/** The AI SDK door's UI message stream, ended by `[DONE]`. */
export const UI_MESSAGES: Format = {
  isToken: (frame) => frame.includes('"type":"text-delta"'),
  isEnd: (frame) => frame.startsWith("data: [DONE]"),
  textOf: (frame) => (dataOf(frame) as { delta: string }).delta,
};

/** Sends one streaming POST and times the first and last frame the format calls a token. */
export function timeStream(
  agent: http.Agent,
  url: URL,
  body: string,
  format: Format,
  upstreamAt: () => number,
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
        let ended = false;
        const tokenFrames: string[] = [];
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          const now = performance.now();
          const frames = (rest + chunk).split("\n\n");
          rest = frames.pop() ?? "";
          for (const frame of frames) {
            if (format.isToken(frame)) {
              tokenFrames.push(frame);
              if (first < 0) first = now;
              last = now;
            } else if (format.isEnd(frame)) ended = true;
          }
        });
        res.on("end", () => {
          if (!ended || first < 0) {
            reject(new Error(`${url.pathname}: stream ended without tokens or its end`));
            return;
          }
          resolve({
            headersMs,
            firstTokenMs: first - started,
            totalMs: last - started,
            tokens: tokenFrames.length,
            text: tokenFrames.map(format.textOf).join(""),
            upstreamMs: upstreamAt() < 0 ? -1 : upstreamAt() - started,
          });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Times an SDK stream: `chunks` yields each chunk's text ("" for chunks without any). */
export async function timeSdk(
  open: () => Promise<AsyncIterable<unknown>>,
  textOf: (chunk: unknown) => string,
  upstreamAt: () => number,
): Promise<Timing> {
  const started = performance.now();
  const stream = await open();
  const headersMs = performance.now() - started;
  let first = -1;
  let last = -1;
  let tokens = 0;
  let text = "";
  for await (const chunk of stream) {
    const piece = textOf(chunk);
    if (piece === "") continue;
    const now = performance.now();
    if (first < 0) first = now;
    last = now;
    tokens++;
    text += piece;
  }
  if (first < 0) throw new Error("the SDK's stream ended without tokens");
  return {
    headersMs,
    firstTokenMs: first - started,
    totalMs: last - started,
    tokens,
    text,
    upstreamMs: upstreamAt() < 0 ? -1 : upstreamAt() - started,
  };
}

const BENCH_MODEL = "gpt-4o-mini";

/** `chat.completions.create` streaming, as the gateway's runner and a door's user call it. */
export function sdkChat(sdk: OpenAI, upstreamAt: () => number): Promise<Timing> {
  return timeSdk(
    () =>
      sdk.chat.completions.create({
        model: BENCH_MODEL,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "bench" }],
      }),
    (chunk) =>
      (chunk as { choices: Array<{ delta?: { content?: string | null } }> }).choices[0]?.delta?.content ?? "",
    upstreamAt,
  );
}

/** `responses.create` streaming: the text of `response.output_text.delta` events. */
export function sdkResponses(sdk: OpenAI, upstreamAt: () => number): Promise<Timing> {
  return timeSdk(
    () => sdk.responses.create({ model: BENCH_MODEL, input: "bench", stream: true }),
    (event) => {
      const e = event as { type: string; delta?: string };
      return e.type === "response.output_text.delta" ? (e.delta ?? "") : "";
    },
    upstreamAt,
  );
}

export const REQUEST_BODIES = {
  chat: JSON.stringify({
    model: BENCH_MODEL,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "bench" }],
  }),
  native: JSON.stringify({ message: "bench" }),
  responses: JSON.stringify({ model: BENCH_MODEL, input: "bench", stream: true }),
  /** `DefaultChatTransport`'s body for a new chat's first message. */
  ui: (chatId: string) =>
    JSON.stringify({
      id: chatId,
      messages: [{ id: `${chatId}-m1`, role: "user", parts: [{ type: "text", text: "bench" }] }],
      trigger: "submit-message",
      messageId: null,
    }),
};

/** A quantile of a list of timings (NaN for none), the median, and a figure rounded to microseconds. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) * q)]!;
}
export const median = (values: readonly number[]) => quantile(values, 0.5);
export const r3 = (value: number) => Math.round(value * 1000) / 1000;
