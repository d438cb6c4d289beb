/**
 * The OpenAI-compatible door driven by the real `openai` package: two gateways on one Redis (one
 * prefix), so every resume is read on the other instance than the run's.
 */
import { createParser } from "eventsource-parser";
import { SignJWT } from "jose";
import OpenAI from "openai";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import type { ResponseStreamEvent } from "openai/resources/responses/responses";
import { Stream } from "openai/streaming";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { getJson, randomPrefix, startTestGateway, type TestGateway } from "../helpers/index.js";

const WEATHER_TOOL = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

let a: TestGateway;
let b: TestGateway;

beforeAll(async () => {
  const prefix = randomPrefix();
  const env = { SIMULATED_TOKENS_PER_SECOND: "200" };
  [a, b] = await Promise.all([
    startTestGateway({ redisUrl: inject("redisUrl"), prefix, env }),
    startTestGateway({ redisUrl: inject("redisUrl"), prefix, env }),
  ]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

const client = (gateway: TestGateway, fetch?: typeof globalThis.fetch) =>
  new OpenAI({
    baseURL: `${gateway.url}/v1`,
    apiKey: "unused-in-open-mode",
    maxRetries: 0,
    ...(fetch ? { fetch } : {}),
  });

/** Chunks of a chat stream read with the SDK's own SSE parser. */
async function chunksOf(response: Response): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of Stream.fromSSEResponse<ChatCompletionChunk>(response, new AbortController())) {
    chunks.push(chunk);
  }
  return chunks;
}

const textOf = (chunks: ChatCompletionChunk[]) =>
  chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");

/** A fetch that also records each SSE frame's `id:` (the SDK does not expose them), frame by frame. */
function recordingFetch(ids: Array<string | undefined>): typeof globalThis.fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (!response.body || !response.headers.get("content-type")?.startsWith("text/event-stream"))
      return response;
    const [sdk, mine] = response.body.tee();
    const parser = createParser({ onEvent: (event) => ids.push(event.id) });
    void (async () => {
      const decoder = new TextDecoder();
      const reader = mine.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.feed(decoder.decode(value, { stream: true }));
        }
      } catch {
        // The SDK's side was aborted.
      }
    })();
    return new Response(sdk, { status: response.status, headers: response.headers });
  };
}

describe("the OpenAI-compatible door, through the openai package", () => {
  it("lists its models", async () => {
    const models = await client(a).models.list();
    expect(models.data.map((model) => model.id)).toContain("simulated");
  });

  it("answers a chat completion, not streamed, with X-Session-Id naming its session", async () => {
    const { data, response } = await client(a)
      .chat.completions.create({
        model: "simulated",
        messages: [{ role: "user", content: "hi [tokens=12]" }],
      })
      .withResponse();
    const sessionId = response.headers.get("x-session-id")!;
    expect(data.id).toBe(`chatcmpl-${sessionId}`);
    expect(data.object).toBe("chat.completion");
    expect(data.choices[0]!.message.content!.split(" ").length).toBeGreaterThan(5);
    expect(data.choices[0]!.finish_reason).toBe("stop");
    expect(data.usage?.completion_tokens).toBe(12);
    // An ordinary session underneath, on every instance.
    const session = await getJson(`${b.url}/api/v1/sessions/${sessionId}`);
    expect(session.body).toMatchObject({ id: sessionId, status: "done" });
  });

  it("streams chunks, usage last when asked", async () => {
    const { data: stream, response } = await client(a)
      .chat.completions.create({
        model: "simulated",
        messages: [{ role: "user", content: "hi [tokens=10]" }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const sessionId = response.headers.get("x-session-id")!;
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.id === `chatcmpl-${sessionId}`)).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content).length).toBe(10);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 10 } });
  });

  it("streams a tool call, and answers the tool's result", async () => {
    const openai = client(a);
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Oslo?" }];
    const runner = openai.chat.completions.stream({ model: "simulated", messages, tools: [WEATHER_TOOL] });
    const deltas: string[] = [];
    runner.on("chunk", (chunk) => {
      const call = chunk.choices[0]?.delta.tool_calls?.[0];
      if (call?.function?.arguments) deltas.push(call.function.arguments);
    });
    const completion = await runner.finalChatCompletion();
    const call = completion.choices[0]!.message.tool_calls![0]!;
    expect(completion.choices[0]!.finish_reason).toBe("tool_calls");
    expect(call.type === "function" && call.function.name).toBe("get_weather");
    expect(deltas.length).toBeGreaterThan(1);
    const args = call.type === "function" ? call.function.arguments : "";
    expect(deltas.join("")).toBe(args);
    expect(JSON.parse(args)).toHaveProperty("city");
    const answer = await openai.chat.completions.create({
      model: "simulated",
      messages: [
        ...messages,
        completion.choices[0]!.message,
        { role: "tool", tool_call_id: call.id, content: '{"celsius": 3}' },
      ],
      tools: [WEATHER_TOOL],
    });
    expect(answer.choices[0]!.finish_reason).toBe("stop");
    expect(answer.choices[0]!.message.content).toBeTruthy();
  });

  it("streams reasoning as reasoning_content deltas", async () => {
    const stream = await client(a).chat.completions.create({
      model: "simulated",
      messages: [{ role: "user", content: "think [tokens=3]" }],
      reasoning_effort: "low",
      stream: true,
    });
    let reasoning = "";
    for await (const chunk of stream) {
      reasoning +=
        (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? "";
    }
    expect(reasoning.split(" ").length).toBeGreaterThan(5);
  });

  it("a stream cut after k chunks resumes on another instance with exactly the rest", async () => {
    const ids: Array<string | undefined> = [];
    const { data: stream, response } = await client(a, recordingFetch(ids))
      .chat.completions.create({
        model: "simulated",
        messages: [{ role: "user", content: "long [tokens=60]" }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const sessionId = response.headers.get("x-session-id")!;
    const k = 7;
    const first: ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      first.push(chunk);
      if (first.length === k) break; // the SDK aborts the request
    }
    // Frames are parsed on the recording side as they arrive: wait for the k-th one.
    while (ids.length < k) await new Promise((resolve) => setImmediate(resolve));
    const lastEventId = ids[k - 1]!;
    expect(lastEventId).toMatch(/^\d+-\d+$/);
    const resumed = await fetch(`${b.url}/v1/chat/completions/${sessionId}/stream`, {
      headers: { "Last-Event-ID": lastEventId },
    });
    expect(resumed.status).toBe(200);
    const rest = await chunksOf(resumed);
    const whole = await chunksOf(await fetch(`${b.url}/v1/chat/completions/${sessionId}/stream`));
    expect([...first, ...rest]).toEqual(whole);
    expect(whole.filter((chunk) => chunk.choices[0]?.delta.content).length).toBe(60);
    expect(textOf(whole)).toBe(textOf(first) + textOf(rest));
    expect(whole.at(-1)?.usage?.completion_tokens).toBe(60);
    // At the end: nothing more, and EventSource-style clients stop.
    const after = await fetch(`${b.url}/v1/chat/completions/${sessionId}/stream`, {
      headers: { "Last-Event-ID": ids.at(-1) ?? "9999999999999-0" },
    });
    expect([200, 204]).toContain(after.status);
  });

  it("streams the Responses API, numbered from 0", async () => {
    const stream = await client(a).responses.create({
      model: "simulated",
      input: "hi [tokens=8]",
      stream: true,
    });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[0]!.type).toBe("response.created");
    const completed = events.at(-1)!;
    expect(completed.type).toBe("response.completed");
    const text = events
      .flatMap((event) => (event.type === "response.output_text.delta" ? [event.delta] : []))
      .join("");
    if (completed.type === "response.completed") {
      expect(completed.response.output_text).toBe(text);
      expect(completed.response.id).toMatch(/^resp_/);
    }
    const retrieved = await client(b).responses.retrieve(
      completed.type === "response.completed" ? completed.response.id : "",
    );
    expect(retrieved.status).toBe("completed");
    expect(retrieved.output_text).toBe(text);
  });

  it("responses.retrieve(id, {stream, starting_after}) on another instance goes on after N", async () => {
    const stream = await client(a).responses.create({
      model: "simulated",
      input: "long [tokens=50]",
      stream: true,
      background: true,
    });
    const first: ResponseStreamEvent[] = [];
    let id = "";
    for await (const event of stream) {
      first.push(event);
      if (event.type === "response.created") id = event.response.id;
      if (first.length === 9) break;
    }
    const after = first.at(-1)!.sequence_number;
    const rest: ResponseStreamEvent[] = [];
    for await (const event of await client(b).responses.retrieve(id, {
      stream: true,
      starting_after: after,
    })) {
      rest.push(event);
    }
    const whole: ResponseStreamEvent[] = [];
    for await (const event of await client(b).responses.retrieve(id, { stream: true })) whole.push(event);
    expect([...first, ...rest]).toEqual(whole);
    expect(whole.at(-1)?.type).toBe("response.completed");
  });

  it("cancels a response on another instance; the response says cancelled", async () => {
    const started = await client(a).responses.create({
      model: "simulated",
      input: "very long [tokens=100000]",
      background: true,
    });
    expect(started.status).toBe("in_progress");
    const cancelled = await client(b).responses.cancel(started.id);
    expect(cancelled.status).toBe("cancelled");
    expect((await client(a).responses.retrieve(started.id)).status).toBe("cancelled");
    const events: ResponseStreamEvent[] = [];
    for await (const event of await client(a).responses.retrieve(started.id, { stream: true }))
      events.push(event);
    expect(events.at(-1)?.type as string).toBe("response.cancelled");
  });

  it("answers errors in OpenAI's shape", async () => {
    const error = await client(a)
      .chat.completions.create({ model: "simulated", messages: [{ role: "wizard" as "user", content: "x" }] })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    const bad = error as InstanceType<typeof OpenAI.BadRequestError>;
    expect(bad.status).toBe(400);
    expect(bad.param).toBe("messages.0.role");
    expect(bad.type).toBe("invalid_request_error");
    const missing = await client(a)
      .responses.retrieve("resp_nosuchsession")
      .catch((caught: unknown) => caught);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    // A run that fails mid-stream: the SDK throws the error frame.
    const failing = await client(a).chat.completions.create({
      model: "simulated",
      messages: [{ role: "user", content: "go [fail]" }],
      stream: true,
    });
    const thrown = await (async () => {
      for await (const _chunk of failing) {
        // reading
      }
    })().catch((caught: unknown) => caught);
    expect(thrown).toBeInstanceOf(OpenAI.APIError);
    expect((thrown as InstanceType<typeof OpenAI.APIError>).code).toBe("upstream_error");
  });
});

describe("the OpenAI-compatible door with authentication", () => {
  const SECRET = "a-test-secret-of-at-least-32-bytes!!";
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({ env: { AUTH_JWT_SECRET: SECRET } });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it("takes the gateway's JWT as the API key, and refuses another", async () => {
    const token = await new SignJWT({ scope: "run subscribe" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
    const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: token, maxRetries: 0 });
    const completion = await openai.chat.completions.create({
      model: "simulated",
      messages: [{ role: "user", content: "hi [tokens=3]" }],
    });
    expect(completion.choices[0]!.message.content).toBeTruthy();
    const refused = await new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey: "not-a-token",
      maxRetries: 0,
    }).models
      .list()
      .catch((caught: unknown) => caught);
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((refused as InstanceType<typeof OpenAI.AuthenticationError>).error).toMatchObject({
      type: "authentication_error",
      code: "invalid_token",
    });
  });
});
