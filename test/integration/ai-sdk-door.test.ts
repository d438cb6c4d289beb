/**
 * The AI SDK door driven by the real `ai` package: `DefaultChatTransport` against the gateway, the
 * chunks read with `readUIMessageStream` (the SDK builds the message), and `reconnectToStream` on
 * another instance of the same Redis while the run goes on and after it.
 */
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { getJson, randomPrefix, startTestGateway, type TestGateway } from "../helpers/index.js";

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

const transport = (gateway: TestGateway, body: object = { model: "simulated" }) =>
  new DefaultChatTransport<UIMessage>({ api: `${gateway.url}/api/v1/chat`, body });

const userMessage = (text: string): UIMessage => ({
  id: `u-${Math.random().toString(36).slice(2)}`,
  role: "user",
  parts: [{ type: "text", text }],
});

const newChatId = () => `chat-${Math.random().toString(36).slice(2)}`;

async function send(gateway: TestGateway, chatId: string, messages: UIMessage[], body?: object) {
  return transport(gateway, body).sendMessages({
    chatId,
    messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
}

/** The assistant message the SDK builds from a stream, and every chunk it read. */
async function build(
  stream: ReadableStream<UIMessageChunk>,
): Promise<{ message: UIMessage; chunks: UIMessageChunk[] }> {
  const chunks: UIMessageChunk[] = [];
  const recorded = stream.pipeThrough(
    new TransformStream<UIMessageChunk, UIMessageChunk>({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  let message: UIMessage | undefined;
  for await (const built of readUIMessageStream({ stream: recorded })) message = built;
  return { message: message!, chunks };
}

const textOf = (message: UIMessage) =>
  message.parts.flatMap((part) => (part.type === "text" ? [part.text] : [])).join("");

describe("the AI SDK door, through the ai package", () => {
  it("answers a UI message stream: start, text, finish", async () => {
    const response = await fetch(`${a.url}/api/v1/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: newChatId(),
        messages: [userMessage("hi [tokens=3]")],
        trigger: "submit-message",
      }),
    });
    expect(response.headers.get("x-vercel-ai-ui-message-stream")).toBe("v1");
    const body = await response.text();
    expect(body.trimEnd().endsWith("data: [DONE]")).toBe(true);

    const { message, chunks } = await build(await send(a, newChatId(), [userMessage("hi [tokens=12]")]));
    expect(chunks[0]).toMatchObject({ type: "start" });
    expect(chunks.at(-1)).toEqual({ type: "finish", finishReason: "stop" });
    expect(message.role).toBe("assistant");
    expect(message.parts.filter((part) => part.type === "text")).toHaveLength(1);
    expect(textOf(message).length).toBeGreaterThan(10);
    // The message id is the run's session: an ordinary session, on every instance.
    const session = await getJson(`${b.url}/api/v1/sessions/${message.id}`);
    expect(session.body).toMatchObject({ status: "done", metadata: { door: "ai-sdk" } });
  });

  it("reasoning and tool parts arrive as the SDK builds them; the tool's result is sent back", async () => {
    const tools = [
      {
        type: "function",
        function: {
          name: "get_weather",
          parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
        },
      },
    ];
    const chatId = newChatId();
    const question = userMessage("Weather in Oslo?");
    const first = await build(
      await send(a, chatId, [question], { model: "simulated", reasoning_effort: "low", tools }),
    );
    const parts = first.message.parts.filter((part) => part.type !== "step-start");
    expect(parts.map((part) => part.type)).toEqual(["reasoning", "tool-get_weather"]);
    expect(parts[0]).toMatchObject({ state: "done" });
    const call = parts[1] as Extract<UIMessage["parts"][number], { type: `tool-${string}` }>;
    expect(call.state).toBe("input-available");
    expect(call.input).toHaveProperty("city");
    expect(first.chunks.some((chunk) => chunk.type === "tool-input-delta")).toBe(true);
    expect(first.chunks.at(-1)).toEqual({ type: "finish", finishReason: "tool-calls" });

    // The app ran the tool: the assistant message goes back with its output, and the model answers.
    const answered: UIMessage = {
      ...first.message,
      parts: first.message.parts.map((part) =>
        part === call ? { ...call, state: "output-available", output: { celsius: 3 } } : part,
      ) as UIMessage["parts"],
    };
    const second = await build(await send(a, chatId, [question, answered], { model: "simulated", tools }));
    expect(textOf(second.message).length).toBeGreaterThan(0);
    expect(second.chunks.at(-1)).toEqual({ type: "finish", finishReason: "stop" });
  });

  it("reconnectToStream mid-run on another instance replays the run from its start; after it, null", async () => {
    const chatId = newChatId();
    const stream = await send(a, chatId, [userMessage("long [tokens=80]")]);
    const reader = stream.getReader();
    const seen: UIMessageChunk[] = [];
    while (seen.filter((chunk) => chunk.type === "text-delta").length < 5) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended early");
      seen.push(value);
    }
    await reader.cancel();
    const resumed = await transport(b).reconnectToStream({ chatId });
    expect(resumed).not.toBeNull();
    const { message } = await build(resumed!);
    expect(message.id).toBe((seen[0] as { messageId?: string }).messageId);
    const whole = await (await fetch(`${a.url}/v1/responses/resp_${message.id}`)).json();
    expect(textOf(message)).toBe(whole.output_text);
    expect(await transport(b).reconnectToStream({ chatId })).toBeNull();
    expect(await transport(a).reconnectToStream({ chatId: newChatId() })).toBeNull();
  });

  it("refuses a body that is not the transport's", async () => {
    const response = await fetch(`${a.url}/api/v1/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "c", messages: [userMessage("x")], temperature: 9 }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_request" } });
  });
});
