/**
 * Agent-event tests' shared setup: two gateway instances on one Redis (one key prefix) calling the
 * OpenAI fixture through the real SDK, a run started on one and read on the other, and the folding of
 * what a reader received (snapshot, deltas, calls) into the state a reader that never fell behind has.
 */
import { createParser } from "eventsource-parser";
import { expect, inject } from "vitest";
import type { OpenAIFixture } from "../fixtures/openai-server.js";
import { startTestGateway, type TestGateway } from "./gateway.js";
import { randomPrefix } from "./keys.js";
import { collectUntilClosed, postJson, type SseEvent } from "./sse-client.js";

export type Json = Record<string, unknown>;

export interface AgentPair {
  /** Where runs are started. */
  writer: TestGateway;
  /** The other instance, where they are read. */
  reader: TestGateway;
  close(): Promise<void>;
}

/** Two instances on one Redis (one key prefix), calling `fixture` through the SDK. */
export async function startAgentPair(
  fixture: OpenAIFixture,
  env: Record<string, string> = {},
): Promise<AgentPair> {
  const options = {
    redisUrl: inject("redisUrl"),
    prefix: randomPrefix(),
    env: { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fixture.url, DEFAULT_MODEL: "gpt-test", ...env },
  };
  const writer = await startTestGateway(options);
  const reader = await startTestGateway(options).catch(async (error: unknown) => {
    await writer.close();
    throw error;
  });
  return {
    writer,
    reader,
    close: async () => {
      await writer.close();
      await reader.close();
    },
  };
}

/** An event as [type, data exactly as sent]. */
export type Frame = [string, string];

export const frame = (type: string, data: Json): Frame => [type, JSON.stringify(data)];

export interface RoundTrip {
  id: string;
  /** The frames after `start`. */
  frames: Frame[];
  /** Everything read, `start` included. */
  events: SseEvent[];
}

/** Starts a run on `writer` (`POST /api/v1/sessions`), reads it whole on `reader`. */
export async function roundTrip(writer: TestGateway, reader: TestGateway, body: Json): Promise<RoundTrip> {
  const id = await startRun(writer, body);
  const stream = await collectUntilClosed(`${reader.url}/api/v1/sessions/${id}/stream`);
  const events = stream.events;
  expect(events[0]?.event).toBe("start");
  expect(JSON.parse(events[0]!.data)).toMatchObject({ model: body.model ?? "gpt-test" });
  return { id, frames: events.slice(1).map((e) => [e.event, e.data]), events };
}

/** `POST /api/v1/sessions` on `gateway`: the new session's id. */
export async function startRun(gateway: TestGateway, body: Json): Promise<string> {
  const created = await postJson(`${gateway.url}/api/v1/sessions`, body);
  expect(created.status, created.text).toBe(201);
  return created.body.id as string;
}

/** A function tool as a run's body carries it. */
export const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

/** The counts of the two time-to-first histograms in an instance's /metrics. */
export async function histogramCounts(
  gateway: TestGateway,
): Promise<{ firstOutput: number; firstAnswer: number }> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const count = (name: string) => Number(new RegExp(`^${name}_count (\\d+)$`, "m").exec(text)?.[1] ?? "NaN");
  return {
    firstOutput: count("sse_run_time_to_first_token_seconds"),
    firstAnswer: count("sse_run_time_to_first_answer_token_seconds"),
  };
}

/** A whole SSE body as frames. */
export function parseSse(text: string): Frame[] {
  const frames: Frame[] = [];
  const parser = createParser({ onEvent: (event) => frames.push([event.event ?? "message", event.data]) });
  parser.feed(text);
  return frames;
}

/** A session's state as a reader rebuilds it. */
export interface Assembled {
  reasoning: string;
  content: string;
  calls: Array<{ index: number; id?: string; name?: string; arguments: string }>;
}

/**
 * Folds what a reader received (snapshot first, if any) into reasoning, content and calls. Event names
 * may carry a multiplexed connection's `<sessionId>:` prefix; pass `sessionId` to keep only its events.
 */
export function assemble(events: SseEvent[], sessionId?: string): Assembled {
  let reasoning = "";
  let content = "";
  const calls = new Map<number, Assembled["calls"][number]>();
  const callAt = (index: number) => {
    const call = calls.get(index) ?? { index, arguments: "" };
    calls.set(index, call);
    return call;
  };
  for (const event of events) {
    let type = event.event;
    if (sessionId !== undefined) {
      if (!type.startsWith(`${sessionId}:`)) continue;
      type = type.slice(sessionId.length + 1);
    }
    const data = JSON.parse(event.data) as Json;
    switch (type) {
      case "snapshot":
        reasoning = data.reasoning as string;
        content = data.content as string;
        calls.clear();
        for (const call of data.tool_calls as Json[]) Object.assign(callAt(call.index as number), call);
        break;
      case "reasoning":
        reasoning += data.content as string;
        break;
      case "token":
        content += data.content as string;
        break;
      case "tool_call_delta": {
        const call = callAt(data.index as number);
        if (typeof data.id === "string") call.id = data.id;
        if (typeof data.name === "string") call.name = data.name;
        call.arguments += data.arguments as string;
        break;
      }
      case "tool_call":
        Object.assign(callAt(data.index as number), data);
        break;
    }
  }
  return { reasoning, content, calls: [...calls.values()].sort((a, b) => a.index - b.index) };
}

/**
 * What a catch-up that folds deltas may do to a run's frames, checked against the whole run: each
 * folded `tool_call_delta` is a contiguous piece of one call's arguments, and no frame of a call comes
 * after a later call's first frame.
 */
export function expectFoldedDeltasOfOneCall(frames: Frame[], expected: Assembled): void {
  const deltas = frames
    .filter(([type]) => type === "tool_call_delta")
    .map(([, data]) => JSON.parse(data) as Json);
  for (const delta of deltas) {
    const whole = expected.calls[delta.index as number]!.arguments;
    expect(whole).toContain(delta.arguments as string);
  }
  const order = frames.flatMap(([type, data]) =>
    type === "tool_call_delta" || type === "tool_call" ? [(JSON.parse(data) as Json).index as number] : [],
  );
  expect(order).toEqual([...order].sort((a, b) => a - b));
}

/** A multiplexed connection's session events as the single-session frames of `sessionId`. */
export function sessionFrames(events: SseEvent[], sessionId: string): Frame[] {
  return events.flatMap((e): Frame[] =>
    e.event.startsWith(`${sessionId}:`) ? [[e.event.slice(sessionId.length + 1), e.data]] : [],
  );
}
