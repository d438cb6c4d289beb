/**
 * The simulated model (no API key, or `model: "simulated"`): plausible English at a steady pace, so
 * the gateway works offline. Given `tools`, it calls one of them (arguments filled in from the tool's
 * schema) and ends with `finish_reason: "tool_calls"`; given a tool's result as the last message, it
 * answers in text; given `reasoning_effort`, it "thinks" first (reasoning events). Every run of it is
 * labelled `simulated` in its `start` event.
 */
import {
  answerToToolResult,
  chooseTool,
  fragments,
  messageText,
  sampleArguments,
} from "./simulated-tools.js";
import {
  type ChatMessage,
  type ModelChunk,
  type ModelProvider,
  type ModelRequest,
  UpstreamError,
} from "./types.js";

export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

export interface SimulatedProviderOptions {
  tokensPerSecond: number;
  /** Resolves after `ms`, or early when `signal` aborts. Defaults to a `setTimeout` sleep. */
  sleep?: Sleep;
}

/** Timers are too coarse below this: faster rates sleep once per burst of tokens instead. */
const MIN_SLEEP_MS = 4;
const MIN_TOKENS = 40;
const MAX_EXTRA_TOKENS = 80;
/** Caps `[tokens=N]` so one prompt cannot ask for an endless stream. */
const MAX_REQUESTED_TOKENS = 1_000_000;
const FAIL_AFTER_TOKENS = 3;
const TOKENS_DIRECTIVE = /\[tokens=(\d+)\]/;
const FAIL_DIRECTIVE = /\[fail\]/;
/** Words of reasoning per `reasoning_effort`, before the answer or the call. */
const REASONING_WORDS: Readonly<Record<string, number>> = {
  minimal: 6,
  low: 12,
  medium: 24,
  high: 48,
  xhigh: 64,
  max: 80,
};
/** Characters of a call's arguments per `tool_call_delta`, as models stream them. */
const ARGUMENT_FRAGMENT_CHARS = 6;

export function createSimulatedProvider(options: SimulatedProviderOptions): ModelProvider {
  if (!(options.tokensPerSecond > 0) || !Number.isFinite(options.tokensPerSecond)) {
    throw new RangeError("tokensPerSecond must be a positive number");
  }
  const intervalMs = 1000 / options.tokensPerSecond;
  const pacing: Pacing = {
    sleep: options.sleep ?? abortableSleep,
    intervalMs,
    burstSize: Math.max(1, Math.ceil(MIN_SLEEP_MS / intervalMs)),
  };
  return { name: "simulated", stream: (request) => simulate(request, pacing) };
}

interface Pacing {
  sleep: Sleep;
  intervalMs: number;
  burstSize: number;
}

/** Paces chunks: one sleep per burst of `burstSize` chunks. */
class Pacer {
  private emitted = 0;
  constructor(
    private readonly pacing: Pacing,
    private readonly signal: AbortSignal,
  ) {}

  get count(): number {
    return this.emitted;
  }

  /** Waits until the next chunk is due; false when the run was aborted meanwhile. */
  async next(remaining: number): Promise<boolean> {
    if (this.emitted % this.pacing.burstSize === 0) {
      const burst = Math.max(1, Math.min(this.pacing.burstSize, remaining));
      await this.pacing.sleep(burst * this.pacing.intervalMs, this.signal);
    }
    if (this.signal.aborted) return false;
    this.emitted += 1;
    return true;
  }
}

async function* simulate(request: ModelRequest, pacing: Pacing): AsyncGenerator<ModelChunk> {
  const { signal } = request;
  const options = request.options ?? {};
  const prompt = lastUserMessage(request.messages);
  const toolAnswer = answerToToolResult(request.messages);
  const random = mulberry32(fnv1a(toolAnswer ? `${prompt}\n${toolAnswer.join("")}` : prompt));
  const pacer = new Pacer(pacing, signal);
  const promptTokens = request.messages.reduce((sum, message) => sum + countWords(messageText(message)), 0);

  const reasoningWords = REASONING_WORDS[options.reasoning_effort ?? ""] ?? 0;
  let reasoning = 0;
  if (reasoningWords > 0) {
    for (const word of generateText(random, "Let me think about this")) {
      if (reasoning >= reasoningWords) break;
      if (!(await pacer.next(reasoningWords - reasoning))) return;
      yield { kind: "reasoning", content: word };
      reasoning += 1;
    }
  }
  const usage = (completion: number) => ({
    kind: "usage" as const,
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completion,
      total_tokens: promptTokens + completion,
      ...(reasoningWords > 0 ? { reasoning_tokens: reasoning } : {}),
    },
  });

  const tool = toolAnswer ? null : chooseTool(options, random);
  if (tool) {
    const id = `call_sim${fnv1a(`${prompt}/${tool.function.name}`).toString(36)}`;
    const args = sampleArguments(tool, prompt);
    const parts = fragments(args, ARGUMENT_FRAGMENT_CHARS);
    if (!(await pacer.next(parts.length + 1))) return;
    yield { kind: "tool_call_delta", index: 0, id, name: tool.function.name, arguments: "" };
    for (const [i, part] of parts.entries()) {
      if (!(await pacer.next(parts.length - i))) return;
      yield { kind: "tool_call_delta", index: 0, arguments: part };
    }
    yield { kind: "tool_call", index: 0, id, name: tool.function.name, arguments: args };
    yield usage(pacer.count);
    yield { kind: "finish", reason: "tool_calls" };
    return;
  }

  const requested = TOKENS_DIRECTIVE.exec(prompt)?.[1];
  const wanted =
    requested === undefined
      ? MIN_TOKENS + Math.floor(random() * (MAX_EXTRA_TOKENS + 1))
      : Math.min(Number(requested), MAX_REQUESTED_TOKENS);
  const cap = options.max_completion_tokens;
  const total = typeof cap === "number" ? Math.min(wanted, Math.max(0, cap - reasoning)) : wanted;
  const fails = FAIL_DIRECTIVE.test(prompt);

  let emitted = 0;
  const text = toolAnswer ? answerThenText(toolAnswer, random) : generateText(random);
  for (const token of text) {
    if (emitted >= total || (fails && emitted >= FAIL_AFTER_TOKENS)) break;
    if (!(await pacer.next(total - emitted))) return;
    yield { kind: "token", content: token };
    emitted += 1;
  }
  if (signal.aborted) return;
  if (fails) throw new UpstreamError("upstream_error", "The simulated model failed, as the prompt asked.");

  yield usage(reasoning + emitted);
  yield { kind: "finish", reason: total < wanted ? "length" : "stop" };
}

function* answerThenText(answer: readonly string[], random: () => number): Generator<string> {
  yield* answer;
  yield "\n\n";
  yield* generateText(random);
}

function lastUserMessage(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message?.role === "user") return messageText(message);
  }
  return "";
}

function countWords(text: string): number {
  return text.match(/\S+/g)?.length ?? 0;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

const SUBJECTS = [
  "the gateway",
  "each client",
  "the stream",
  "a small model",
  "this reply",
  "the server",
  "every reader",
  "the browser",
  "our agent",
  "the next request",
];
const VERBS = ["sends", "keeps", "reads", "writes", "replays", "checks", "carries", "delivers", "holds"];
const OBJECTS = [
  "each token",
  "the next event",
  "a short message",
  "the last cursor",
  "every update",
  "the full answer",
  "a steady pace",
  "the open connection",
];
const TAILS = [
  "",
  "as soon as it arrives",
  "without waiting",
  "in order",
  "over a single connection",
  "when the client reconnects",
  "with little delay",
  "one word at a time",
];
const JOINERS = ["and", "so", "while", "because"];

/**
 * Endless English-looking text, as tokens: words with a leading space, "\n\n" between paragraphs.
 * `opening`, when given, comes first (its own spacing kept).
 */
function* generateText(random: () => number, opening?: string): Generator<string> {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const clause = () => [pick(SUBJECTS), pick(VERBS), pick(OBJECTS), pick(TAILS)].join(" ").trim();
  let startOfParagraph = true;
  if (opening) {
    for (const [i, word] of opening.split(" ").entries()) {
      if (word !== "") yield i === 0 ? word : ` ${word}`;
    }
    yield ":";
    startOfParagraph = false;
  }
  while (true) {
    const sentences = 2 + Math.floor(random() * 3);
    for (let s = 0; s < sentences; s++) {
      let text = clause();
      if (random() < 0.3) text += `, ${pick(JOINERS)} ${clause()}`;
      text = text.charAt(0).toUpperCase() + text.slice(1) + (random() < 0.1 ? "!" : ".");
      for (const word of text.split(" ")) {
        yield startOfParagraph ? word : ` ${word}`;
        startOfParagraph = false;
      }
    }
    yield "\n\n";
    startOfParagraph = true;
  }
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A small seeded PRNG (mulberry32): deterministic text here, replayable randomness in tests. */
export function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
