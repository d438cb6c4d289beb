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

async function* simulate(request: ModelRequest, pacing: Pacing): AsyncGenerator<ModelChunk> {
  const { signal } = request;
  const prompt = lastUserMessage(request.messages);
  const random = mulberry32(fnv1a(prompt));
  const requested = TOKENS_DIRECTIVE.exec(prompt)?.[1];
  const total =
    requested === undefined
      ? MIN_TOKENS + Math.floor(random() * (MAX_EXTRA_TOKENS + 1))
      : Math.min(Number(requested), MAX_REQUESTED_TOKENS);
  const fails = FAIL_DIRECTIVE.test(prompt);

  let emitted = 0;
  for (const token of generateText(random)) {
    if (emitted >= total || (fails && emitted >= FAIL_AFTER_TOKENS)) break;
    if (emitted % pacing.burstSize === 0) {
      const burst = Math.min(pacing.burstSize, total - emitted);
      await pacing.sleep(burst * pacing.intervalMs, signal);
    }
    if (signal.aborted) return;
    yield { kind: "token", content: token };
    emitted += 1;
  }
  if (signal.aborted) return;
  if (fails) throw new UpstreamError("upstream_error", "The simulated model failed, as the prompt asked.");

  const promptTokens = request.messages.reduce((sum, message) => sum + countWords(message.content), 0);
  yield {
    kind: "usage",
    usage: { prompt_tokens: promptTokens, completion_tokens: emitted, total_tokens: promptTokens + emitted },
  };
  yield { kind: "finish", reason: "stop" };
}

function lastUserMessage(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message?.role === "user") return message.content;
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

/** Endless English-looking text, as tokens: words with a leading space, "\n\n" between paragraphs. */
function* generateText(random: () => number): Generator<string> {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const clause = () => [pick(SUBJECTS), pick(VERBS), pick(OBJECTS), pick(TAILS)].join(" ").trim();
  let startOfParagraph = true;
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
