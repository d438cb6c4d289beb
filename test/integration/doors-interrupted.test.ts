/**
 * Killing the instance that runs a door's upstream mid-stream (SIGKILL, real gateway processes on one
 * Redis): once its lease lapses another instance ends the run with `error {code: "interrupted"}`, and
 * every door says so in its own shape, read on the surviving instance.
 */
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import OpenAI from "openai";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import type { ResponseStreamEvent } from "openai/resources/responses/responses";
import { Stream } from "openai/streaming";
import { afterEach, expect, inject, it } from "vitest";
import { type GatewayProcess, randomPrefix, startGatewayProcess } from "../helpers/index.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startGateway(prefix: string): Promise<GatewayProcess> {
  const gateway = await startGatewayProcess({
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: "warn",
    LEASE_MS: "1000",
    SIMULATED_TOKENS_PER_SECOND: "20",
  });
  cleanups.push(() => gateway.stop());
  return gateway;
}

it("a killed instance's run ends as interrupted, and every door reports it", async () => {
  const prefix = randomPrefix();
  const [running, surviving] = await Promise.all([startGateway(prefix), startGateway(prefix)]);
  const chatId = `chat-${Math.random().toString(36).slice(2)}`;
  const stream = await new DefaultChatTransport<UIMessage>({
    api: `${running.url}/api/v1/chat`,
    body: { model: "simulated" },
  }).sendMessages({
    chatId,
    messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "a long answer [tokens=100000]" }] }],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  const reader = stream.getReader();
  let sessionId = "";
  let deltas = 0;
  while (deltas < 3) {
    const { value } = await reader.read();
    if (value?.type === "start") sessionId = value.messageId ?? "";
    if (value?.type === "text-delta") deltas++;
  }
  expect(sessionId).not.toBe("");
  running.kill("SIGKILL");
  await running.exited;
  await reader.cancel().catch(() => {});

  // The AI SDK: the chat's run, resumed on the other instance, ends with an error chunk.
  const resumed = await new DefaultChatTransport<UIMessage>({
    api: `${surviving.url}/api/v1/chat`,
  }).reconnectToStream({
    chatId,
  });
  expect(resumed).not.toBeNull();
  const chunks: UIMessageChunk[] = [];
  const errors: unknown[] = [];
  const recorded = resumed!.pipeThrough(
    new TransformStream<UIMessageChunk, UIMessageChunk>({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  for await (const _message of readUIMessageStream({
    stream: recorded,
    onError: (error) => errors.push(error),
  })) {
    // built as the SDK builds it
  }
  expect(chunks.at(-1)).toEqual({
    type: "error",
    errorText: "interrupted: the instance running this session stopped",
  });

  // Chat Completions: the resumed stream ends with an error frame, which the SDK throws.
  const chat = await fetch(`${surviving.url}/v1/chat/completions/${sessionId}/stream`);
  const thrown = await (async () => {
    for await (const _chunk of Stream.fromSSEResponse<ChatCompletionChunk>(chat, new AbortController())) {
      // reading
    }
  })().catch((caught: unknown) => caught);
  expect(thrown).toBeInstanceOf(OpenAI.APIError);
  expect((thrown as InstanceType<typeof OpenAI.APIError>).code).toBe("interrupted");

  // Responses: an `error` event, then `response.failed`; the object says failed.
  const openai = new OpenAI({ baseURL: `${surviving.url}/v1`, apiKey: "open", maxRetries: 0 });
  const events: ResponseStreamEvent[] = [];
  for await (const event of await openai.responses.retrieve(`resp_${sessionId}`, { stream: true }))
    events.push(event);
  expect(events.slice(-2).map((event) => event.type)).toEqual(["error", "response.failed"]);
  expect(events.at(-2)).toMatchObject({ code: "interrupted" });
  const response = await openai.responses.retrieve(`resp_${sessionId}`);
  expect(response.status).toBe("failed");
  expect(response.error?.message).toMatch(/^interrupted:/);
});
