/**
 * The OpenAI fixture on a worker thread: an upstream with its own event loop, as a real model's server
 * is never in the process of the client that times it. Every request gets the same script: `tokens`
 * content deltas written at once, after `answerAfterMs`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { startOpenAIFixture } from "../../test/fixtures/openai-server.js";

const { tokens, answerAfterMs } = workerData as { tokens: string[]; answerAfterMs: number };
const fixture = await startOpenAIFixture();
// The script is queued as each request is recorded, before the fixture takes its script.
fixture.requests.push = () => {
  fixture.script({ tokens, delayMs: 0, answerAfterMs });
  return 0;
};
parentPort!.postMessage(fixture.url);
