/**
 * The OpenAI-compatible door driven by Python's official `openai` package (test/e2e/python), on two
 * gateways of one Redis: what a Python app sees after changing only its `base_url`. The interpreter is
 * `OPENAI_PYTHON` (default `python3`) and must have `openai` installed (.ci/run installs it in a venv).
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { createParser } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { randomPrefix, startTestGateway, type TestGateway } from "../helpers/index.js";

const run = promisify(execFile);
const PYTHON = process.env.OPENAI_PYTHON ?? "python3";
const DRIVER = path.join(import.meta.dirname, "python", "openai_door.py");

interface Seen {
  version: string;
  models: string[];
  chat_stream: {
    session_id: string | null;
    text: string;
    finish_reason: string | null;
    usage: number | null;
  };
  chat_whole: { text: string; object: string };
  responses: {
    types: string[];
    text: string;
    completed_text: string;
    retrieved_on_second: { status: string; text: string };
  };
  error: { status: number; type: string; param: string } | null;
}

let a: TestGateway;
let b: TestGateway;

beforeAll(async () => {
  const prefix = randomPrefix();
  const env = { SIMULATED_TOKENS_PER_SECOND: "500" };
  [a, b] = await Promise.all([
    startTestGateway({ redisUrl: inject("redisUrl"), prefix, env }),
    startTestGateway({ redisUrl: inject("redisUrl"), prefix, env }),
  ]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

/** The text of a chat completion stream as the door replays it (the gateway's own record of the run). */
async function replayedText(gateway: TestGateway, sessionId: string): Promise<string> {
  const response = await fetch(`${gateway.url}/v1/chat/completions/${sessionId}/stream`);
  expect(response.status).toBe(200);
  let text = "";
  const parser = createParser({
    onEvent: (event) => {
      if (event.data === "[DONE]") return;
      const chunk = JSON.parse(event.data) as { choices: Array<{ delta: { content?: string | null } }> };
      text += chunk.choices[0]?.delta.content ?? "";
    },
  });
  parser.feed(await response.text());
  return text;
}

describe("the OpenAI-compatible door through Python's openai package", () => {
  it("lists models, streams and assembles chat completions, streams and retrieves responses, and raises OpenAI's errors", async () => {
    const { stdout } = await run(PYTHON, [DRIVER, `${a.url}/v1`, `${b.url}/v1`], { timeout: 60_000 }).catch(
      (error: { stderr?: string; message: string }) => {
        throw new Error(
          `${PYTHON} ${DRIVER} failed (is the openai package installed? pip install openai; OPENAI_PYTHON names the interpreter): ${error.stderr ?? error.message}`,
        );
      },
    );
    const seen = JSON.parse(stdout) as Seen;
    console.log(`python openai ${seen.version}: chat, responses, retrieve on the other instance, errors`);

    expect(seen.models).toContain("simulated");

    const chat = seen.chat_stream;
    expect(chat.session_id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(chat.finish_reason).toBe("stop");
    expect(chat.usage).toBe(20);
    expect(chat.text.length).toBeGreaterThan(0);
    // What Python read is what the gateway stored: the other instance replays the same text.
    expect(await replayedText(b, chat.session_id!)).toBe(chat.text);

    expect(seen.chat_whole.object).toBe("chat.completion");
    expect(seen.chat_whole.text.length).toBeGreaterThan(0);

    const responses = seen.responses;
    expect(responses.types[0]).toBe("response.created");
    expect(responses.types.at(-1)).toBe("response.completed");
    expect(responses.types).toContain("response.output_text.delta");
    expect(responses.completed_text).toBe(responses.text);
    expect(responses.retrieved_on_second).toEqual({ status: "completed", text: responses.text });

    expect(seen.error).toEqual({ status: 400, type: "invalid_request_error", param: "messages.0.role" });
  });
});
