/**
 * The translation layer (src/doors): session events → Chat Completions chunks, Responses events and
 * the UI message stream, each checked against what the client packages themselves build from it (the
 * `openai` SDK's chat stream accumulator, the `ai` package's chunk schema and readUIMessageStream),
 * and the Responses numbering across compaction (a snapshot of any prefix, as the store folds it).
 */
import { readUIMessageStream, type UIMessage, type UIMessageChunk, uiMessageChunkSchema } from "ai";
import fc from "fast-check";
import { ChatCompletionStream } from "openai/lib/ChatCompletionStream";
import { Stream } from "openai/streaming";
import { describe, expect, it } from "vitest";
import { foldEvents } from "../../src/doors/answer.js";
import { parseEvent } from "../../src/doors/events.js";
import { chatFrames, responsesFrames } from "../../src/doors/frames.js";
import { chatCompletionOf, createChatTranslator, DONE_DATA } from "../../src/doors/openai-chat.js";
import { chatCompletionsRequest, inputMessages } from "../../src/doors/openai-requests.js";
import { createResponsesTranslator, type DoorResponseEvent } from "../../src/doors/openai-responses.js";
import { createUIMessageTranslator, type UIChunk } from "../../src/doors/ui-message.js";
import { modelMessages } from "../../src/doors/ui-request.js";
import { createSnapshot, foldIntoSnapshot, snapshotEvent } from "../../src/store/snapshot.js";
import type { StoredEvent } from "../../src/store/types.js";

// Every chunk the door sends is one the `ai` package knows (compile time).
const _chunk: UIMessageChunk = {} as UIChunk;
void _chunk;

let seq = 0;
const stored = (type: string, data: Record<string, unknown>): StoredEvent => ({
  id: `1700000000000-${seq++}`,
  type,
  data: JSON.stringify(data),
});

/** A run that reasons, answers, calls a tool (two fragments) and ends. */
function toolRun(): StoredEvent[] {
  return [
    stored("start", { model: "m1", createdAt: "2026-01-01T00:00:00.000Z" }),
    stored("reasoning", { content: "Think" }),
    stored("reasoning", { content: "ing." }),
    stored("token", { content: "Let me" }),
    stored("token", { content: " check." }),
    stored("tool_call_delta", { index: 0, id: "call_1", name: "weather", arguments: "" }),
    stored("tool_call_delta", { index: 0, arguments: '{"city":' }),
    stored("tool_call_delta", { index: 0, arguments: '"Oslo"}' }),
    stored("tool_call", { index: 0, id: "call_1", name: "weather", arguments: '{"city":"Oslo"}' }),
    stored("usage", { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10, reasoning_tokens: 2 }),
    stored("done", { session_id: "s1", total_tokens: 10, finish_reason: "tool_calls" }),
  ];
}

const options = { sessionId: "s1", model: "fallback", createdAtMs: 0 };

describe("session events → Chat Completions", () => {
  it("streams one chunk per output event, usage last when asked, then [DONE]", () => {
    const translate = createChatTranslator({ ...options, includeUsage: true });
    const payloads = toolRun().flatMap((event) => translate(parseEvent(event)));
    expect(payloads.at(-1)).toBe(DONE_DATA);
    const chunks = payloads.slice(0, -1).map((text) => JSON.parse(text));
    expect(chunks.every((chunk) => chunk.id === "chatcmpl-s1" && chunk.model === "m1")).toBe(true);
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    expect(chunks[1].choices[0].delta).toEqual({ reasoning_content: "Think" });
    expect(chunks[5].choices[0].delta.tool_calls[0]).toEqual({
      index: 0,
      id: "call_1",
      type: "function",
      function: { name: "weather", arguments: "" },
    });
    expect(chunks.at(-2).choices[0].finish_reason).toBe("tool_calls");
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { total_tokens: 10 } });
  });

  it("what the openai SDK assembles from the chunks is the door's own chat.completion", async () => {
    const translate = createChatTranslator({ ...options, includeUsage: true });
    const text = toolRun()
      .flatMap((event) => translate(parseEvent(event)))
      .map((data) => `data: ${data}\n\n`)
      .join("");
    // The SDK's own SSE parsing (Stream), then its accumulator, as `chat.completions.stream()` does.
    const sse = Stream.fromSSEResponse(new Response(text), new AbortController());
    const stream = ChatCompletionStream.fromReadableStream(sse.toReadableStream());
    const fromSdk = await stream.finalChatCompletion();
    const ours = chatCompletionOf(foldEvents(toolRun().map(parseEvent)), options);
    expect(fromSdk.choices[0]!.message.tool_calls).toEqual(ours.choices[0]!.message.tool_calls);
    expect(fromSdk.choices[0]!.message.content).toBe(ours.choices[0]!.message.content);
    expect(fromSdk.choices[0]!.finish_reason).toBe("tool_calls");
    expect(ours.usage?.completion_tokens_details?.reasoning_tokens).toBe(2);
  });

  it("a run's error and a cancel are OpenAI error frames", () => {
    const translate = createChatTranslator({ ...options, includeUsage: false });
    const [error] = translate(parseEvent(stored("error", { code: "interrupted", message: "gone" })));
    expect(JSON.parse(error!)).toEqual({
      error: { message: "gone", type: "server_error", code: "interrupted", param: null },
    });
    const [cancel] = translate(parseEvent(stored("cancelled", { reason: "requested" })));
    expect(JSON.parse(cancel!).error.code).toBe("cancelled");
  });

  it("frames: the last frame of each event carries its position; a resume skips what was had", () => {
    const events = toolRun();
    const encode = chatFrames({ ...options, includeUsage: false }, events[3]!.id);
    const text = events.map((event) => encode(event).text).join("");
    expect(text.startsWith(`id: ${events[4]!.id}\ndata: `)).toBe(true);
    expect(text).not.toContain("Let me");
    expect(text.endsWith(`id: ${events.at(-1)!.id}\ndata: [DONE]\n\n`)).toBe(true);
  });

  it("a snapshot stands for the folded prefix: the same answer", () => {
    const events = toolRun();
    const snapshot = createSnapshot();
    foldIntoSnapshot(snapshot, events.slice(0, 7));
    const compacted = [snapshotEvent(snapshot), ...events.slice(7)];
    const translate = createChatTranslator({ ...options, includeUsage: false });
    const text = compacted
      .flatMap((event) => translate(parseEvent(event)))
      .filter((data) => data !== DONE_DATA)
      .map((data) => JSON.parse(data).choices[0]?.delta)
      .map(
        (delta) =>
          `${delta?.content ?? ""}${delta?.reasoning_content ?? ""}${delta?.tool_calls?.[0]?.function?.arguments ?? ""}`,
      )
      .join("");
    expect(text).toBe('Thinking.Let me check.{"city":"Oslo"}');
  });

  it("request: OpenAI's own fields are taken, the gateway's own refused", () => {
    const request = chatCompletionsRequest({
      model: "simulated",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 5,
      user: "u1",
    });
    expect(request).toMatchObject({ stream: true, includeUsage: true });
    expect(request.run.options?.max_completion_tokens).toBe(5);
    expect(request.run.metadata).toMatchObject({ user: "u1", door: "openai.chat" });
    expect(() =>
      chatCompletionsRequest({ messages: [{ role: "user", content: "x" }], message: "x" }),
    ).toThrow(/body.message/);
    expect(() => chatCompletionsRequest({ messages: [{ role: "user", content: "x" }], n: 2 })).toThrow(
      /body.n/,
    );
  });
});

describe("session events → the Responses API", () => {
  const translateAll = (events: StoredEvent[]) => {
    const translator = createResponsesTranslator(options);
    return { events: events.flatMap((event) => translator.next(parseEvent(event))), translator };
  };

  it("numbers every event from 0, one after another, and ends with response.completed", () => {
    const { events, translator } = translateAll(toolRun());
    expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.slice(0, 4).map((event) => event.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.reasoning_summary_part.added",
    ]);
    expect(events.at(-1)?.type).toBe("response.completed");
    const response = translator.response();
    expect(response.status).toBe("completed");
    expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message", "function_call"]);
    expect(response.output_text).toBe("Let me check.");
    expect(response.output[2]).toMatchObject({
      call_id: "call_1",
      name: "weather",
      arguments: '{"city":"Oslo"}',
    });
    expect(response.usage?.output_tokens_details.reasoning_tokens).toBe(2);
  });

  it("error: an error event, then response.failed; cancel: response.cancelled", () => {
    const failed = translateAll([
      stored("start", { model: "m" }),
      stored("token", { content: "a" }),
      stored("error", { code: "interrupted", message: "the instance stopped" }),
    ]);
    expect(failed.events.slice(-2).map((event) => event.type)).toEqual(["error", "response.failed"]);
    expect(failed.translator.response().error?.message).toBe("interrupted: the instance stopped");
    const cancelled = translateAll([
      stored("start", { model: "m" }),
      stored("cancelled", { reason: "requested" }),
    ]);
    expect(cancelled.events.at(-1)?.type).toBe("response.cancelled");
    expect(cancelled.translator.status).toBe("cancelled");
  });

  it("frames after starting_after carry the rest only", () => {
    const events = toolRun();
    const encode = responsesFrames(createResponsesTranslator(options), 5);
    const text = events.map((event) => encode(event).text).join("");
    expect(text.startsWith("id: 6\nevent: ")).toBe(true);
  });

  // Session events of a run, in the order models produce them (reasoning, then text or a refusal, then
  // tool calls, deltas of several calls interleaved): each prefix may be folded.
  type Piece = [string, Record<string, unknown>];
  const runEvents = fc
    .tuple(
      fc.nat({ max: 5 }),
      fc.boolean(),
      fc.nat({ max: 8 }),
      fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 8 }),
      fc.boolean(),
    )
    .map(([reasoning, refuses, texts, deltas, usage]) => {
      const body: Piece[] = [
        ...Array.from({ length: reasoning }, (): Piece => ["reasoning", { content: "r" }]),
        ...Array.from(
          { length: texts },
          (): Piece => (refuses ? ["refusal", { content: "no" }] : ["token", { content: "t" }]),
        ),
        ...[...new Set(deltas)]
          .sort()
          .map((index): Piece => ["tool_call_delta", { index, id: `c${index}`, name: "f", arguments: "" }]),
        ...deltas.map((index): Piece => ["tool_call_delta", { index, arguments: "{}" }]),
        ...(usage ? [["usage", { total_tokens: 1 }] as Piece] : []),
      ];
      const events: StoredEvent[] = [stored("start", { model: "m" })];
      const calls = new Set<number>();
      for (const [type, data] of body) {
        events.push(stored(type, data));
        if (type === "tool_call_delta") calls.add(data.index as number);
      }
      // Complete calls in index order, as upstreams do.
      for (const index of [...calls].sort()) {
        events.push(stored("tool_call", { index, id: `c${index}`, name: "f", arguments: "{}" }));
      }
      events.push(stored("done", { finish_reason: "stop" }));
      return events;
    });

  it("a compacted session numbers every kept event as a reader that never fell behind saw it", () => {
    fc.assert(
      fc.property(runEvents, fc.nat(), (events, cut) => {
        const folded = 1 + (cut % (events.length - 1)); // at least `start`, never the terminal event
        const full = translateAll(events).events;
        const snapshot = createSnapshot();
        foldIntoSnapshot(snapshot, events.slice(0, folded));
        const compacted = translateAll([snapshotEvent(snapshot), ...events.slice(folded)]).events;
        const numbers = compacted.map((event) => event.sequence_number);
        // Increasing throughout; the events of the kept part as the full reading numbered them.
        expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
        const tail = (list: DoorResponseEvent[], n: number) => list.slice(list.length - n);
        const keptCount = events
          .slice(folded)
          .reduce((sum, _event, i) => sum + translateAllCount(events, folded + i), 0);
        expect(tail(compacted, keptCount).map((e) => [e.type, e.sequence_number])).toEqual(
          tail(full, keptCount).map((e) => [e.type, e.sequence_number]),
        );
        // The whole text is there.
        const text = (list: DoorResponseEvent[]) =>
          list.flatMap((e) => (e.type === "response.output_text.delta" ? [e.delta] : [])).join("");
        expect(text(compacted)).toBe(text(full));
      }),
      { numRuns: 200 },
    );
  });

  /** How many Responses events the event at `at` yields in a full reading. */
  function translateAllCount(events: StoredEvent[], at: number): number {
    const translator = createResponsesTranslator(options);
    let yielded = 0;
    events.slice(0, at + 1).forEach((event, i) => {
      const out = translator.next(parseEvent(event));
      if (i === at) yielded = out.length;
    });
    return yielded;
  }

  it("input items become the run's messages", () => {
    expect(
      inputMessages([
        { role: "user", content: [{ type: "input_text", text: "hi" }] },
        { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
        { type: "function_call_output", call_id: "c1", output: "42" },
      ]),
    ).toEqual([
      { role: "user", content: [{ type: "text", text: "hi" }] },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "c1", content: "42" },
    ]);
  });
});

describe("a call completed again (an upstream that interleaves calls)", () => {
  const interleaved = () => [
    stored("start", { model: "m" }),
    stored("tool_call_delta", { index: 0, id: "c0", name: "f", arguments: '{"a":' }),
    stored("tool_call", { index: 0, id: "c0", name: "f", arguments: '{"a":' }),
    stored("tool_call_delta", { index: 0, arguments: "1}" }),
    stored("tool_call", { index: 0, id: "c0", name: "f", arguments: '{"a":1}' }),
    stored("done", { finish_reason: "tool_calls" }),
  ];

  it("every door ends with the whole call", async () => {
    const translator = createResponsesTranslator(options);
    const events = interleaved().flatMap((event) => translator.next(parseEvent(event)));
    expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, i) => i));
    expect(translator.response().output[0]).toMatchObject({ arguments: '{"a":1}', status: "completed" });
    expect(
      chatCompletionOf(foldEvents(interleaved().map(parseEvent)), options).choices[0]!.message.tool_calls,
    ).toEqual([{ id: "c0", type: "function", function: { name: "f", arguments: '{"a":1}' } }]);
    const translate = createUIMessageTranslator({ messageId: "s1" });
    const chunks = interleaved().flatMap((event) => translate(parseEvent(event)));
    const available = chunks.filter((chunk) => chunk?.type === "tool-input-available");
    expect(available.at(-1)).toMatchObject({ input: { a: 1 } });
  });
});

describe("session events → the UI message stream", () => {
  async function build(
    events: StoredEvent[],
  ): Promise<{ chunks: UIChunk[]; message: UIMessage | undefined }> {
    const translate = createUIMessageTranslator({ messageId: "s1" });
    const all = events.flatMap((event) => translate(parseEvent(event)));
    expect(all.at(-1)).toBeNull();
    const chunks = all.filter((chunk): chunk is UIChunk => chunk !== null);
    for (const chunk of chunks) {
      const parsed = await uiMessageChunkSchema().validate?.(chunk);
      expect(parsed?.success, JSON.stringify(chunk)).toBe(true);
    }
    let message: UIMessage | undefined;
    const stream = new ReadableStream<UIMessageChunk>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk as UIMessageChunk);
        controller.close();
      },
    });
    for await (const built of readUIMessageStream({ stream })) message = built;
    return { chunks, message };
  }

  it("reasoning, text and a tool call become the parts the SDK builds", async () => {
    const { chunks, message } = await build(toolRun());
    expect(chunks[0]).toEqual({ type: "start", messageId: "s1" });
    expect(chunks.at(-1)).toEqual({ type: "finish", finishReason: "tool-calls" });
    expect(message?.id).toBe("s1");
    const parts = message!.parts.filter((part) => part.type !== "step-start");
    expect(parts).toMatchObject([
      { type: "reasoning", text: "Thinking.", state: "done" },
      { type: "text", text: "Let me check.", state: "done" },
      { type: "tool-weather", toolCallId: "call_1", state: "input-available", input: { city: "Oslo" } },
    ]);
  });

  it("a snapshot of any prefix builds the same message", async () => {
    const events = toolRun();
    const whole = (await build(events)).message;
    for (let folded = 1; folded < events.length - 1; folded++) {
      const snapshot = createSnapshot();
      foldIntoSnapshot(snapshot, events.slice(0, folded));
      const { message } = await build([snapshotEvent(snapshot), ...events.slice(folded)]);
      const texts = (m: UIMessage | undefined) =>
        m?.parts.flatMap((part) => ("text" in part ? [`${part.type}:${part.text}`] : [])).join("|");
      expect(texts(message)).toBe(texts(whole));
      expect(message?.parts.find((part) => part.type === "tool-weather")).toMatchObject({
        state: "input-available",
        input: { city: "Oslo" },
      });
    }
  });

  it("an error ends with an error chunk, a cancel with abort", async () => {
    const failed = await build([
      stored("start", {}),
      stored("error", { code: "interrupted", message: "gone" }),
    ]);
    expect(failed.chunks.at(-1)).toEqual({ type: "error", errorText: "interrupted: gone" });
    const cancelled = await build([stored("start", {}), stored("cancelled", { reason: "requested" })]);
    expect(cancelled.chunks.at(-1)).toEqual({ type: "abort", reason: "requested" });
  });

  it("UI messages become the run's messages: steps, tool calls and their results", () => {
    expect(
      modelMessages([
        { role: "system", parts: [{ type: "text", text: "Be brief." }] },
        { role: "user", parts: [{ type: "text", text: "Weather?" }] },
        {
          role: "assistant",
          parts: [
            { type: "step-start" },
            { type: "reasoning", text: "hmm" },
            { type: "text", text: "Checking." },
            {
              type: "tool-weather",
              toolCallId: "c1",
              state: "output-available",
              input: { city: "Oslo" },
              output: { c: 3 },
            },
            { type: "step-start" },
            { type: "text", text: "It is 3." },
          ],
        },
        { role: "user", parts: [{ type: "text", text: "Thanks" }] },
      ]),
    ).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Weather?" },
      {
        role: "assistant",
        content: "Checking.",
        tool_calls: [
          { id: "c1", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
        ],
      },
      { role: "tool", tool_call_id: "c1", content: '{"c":3}' },
      { role: "assistant", content: "It is 3." },
      { role: "user", content: "Thanks" },
    ]);
  });
});
