/**
 * The OpenAI-compatible door's streaming routes (served by doors/front.ts):
 *
 *   POST /v1/chat/completions                  a run: chunks (`stream: true`) or the assembled completion
 *   GET  /v1/chat/completions/:sessionId/stream  the same chunks again, after `Last-Event-ID`
 *   POST /v1/responses                         a run: Responses events (`stream: true`) or the response
 *   GET  /v1/responses/:id                     the response object; `?stream=true&starting_after=N`: its events after N
 *
 * Each run is an ordinary session (X-Session-Id names it): the dashboard, `@sessions`, cancel and the
 * multiplexed stream see it like any other.
 */
import { readIncarnation } from "../auth/policy.js";
import { errors } from "../errors.js";
import type { AppContext } from "../http/context.js";
import { endEmpty, type StreamRequest } from "../http/stream-request.js";
import { resumeId } from "../http/streams.js";
import { parseSessionId } from "../http/validation.js";
import { admitConnection } from "../limits/admission.js";
import { hasReceivedEnd } from "../mux/stream-connection.js";
import { isPosition } from "../store/positions.js";
import type { SessionInfo } from "../store/types.js";
import { parseEvent, type SessionEvent } from "./events.js";
import { chatFrames, responsesFrames } from "./frames.js";
import { assembleChatCompletion } from "./openai-chat.js";
import { runErrorBody, runErrorStatus, writeOpenAIError } from "./openai-errors.js";
import { chatCompletionsRequest, responsesRequest } from "./openai-requests.js";
import {
  createResponsesTranslator,
  type ResponsesTranslator,
  sessionIdOfResponse,
} from "./openai-responses.js";
import { collectRun, readableSession, startDoorRun, storedEvents, streamThroughDoor } from "./run.js";

const SESSION_HEADER = "X-Session-Id";

function writeJson(
  stream: StreamRequest,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  stream.res.writeHead(status, {
    ...stream.headers,
    ...headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  stream.res.end(text);
  stream.log?.finished();
}

/** The session's include_usage choice, kept so a resume sends the same frames. */
const INCLUDE_USAGE = "include_usage";

export async function serveChatCompletions(
  context: AppContext,
  stream: StreamRequest,
  body: unknown,
): Promise<void> {
  const request = chatCompletionsRequest(body);
  const run = {
    ...request.run,
    metadata: { ...request.run.metadata, ...(request.includeUsage ? { [INCLUDE_USAGE]: true } : {}) },
  };
  const started = await startDoorRun(context, stream.principal, stream.ip, run);
  const { id, session } = started;
  const options = { sessionId: id, model: session.model ?? "unknown", createdAtMs: session.createdAt };
  if (request.stream) {
    await streamThroughDoor(
      context,
      stream,
      id,
      chatFrames({ ...options, includeUsage: request.includeUsage }, null),
      {
        admission: started.admission,
        created: true,
        headers: { [SESSION_HEADER]: id },
        started,
      },
    );
    return;
  }
  const collected = await collectRun(context, stream, started);
  if (stream.res.destroyed) return;
  const { completion, answer } = assembleChatCompletion(collected.events, options);
  const terminal = answer.terminal;
  if (terminal?.type === "done") {
    writeJson(stream, 200, completion, { [SESSION_HEADER]: id });
    return;
  }
  const code = terminal?.type === "error" ? terminal.code : "cancelled";
  const message =
    terminal?.type === "error"
      ? terminal.message
      : `the run was cancelled (${terminal?.reason ?? "requested"})`;
  writeRunError(stream, id, code, message);
}

function writeRunError(stream: StreamRequest, id: string, code: string, message: string): void {
  // A cancelled run is not retried by the SDK (it would start another run).
  const retry: Record<string, string> = code === "cancelled" ? { "x-should-retry": "false" } : {};
  writeOpenAIError(stream.res, runErrorStatus(code), runErrorBody(code, message), {
    ...stream.headers,
    ...retry,
    [SESSION_HEADER]: id,
  });
  stream.log?.finished();
}

export async function serveChatResume(
  context: AppContext,
  rawId: unknown,
  stream: StreamRequest,
): Promise<void> {
  const id = parseSessionId(rawId);
  const after = resumeId(stream.req, stream.query) ?? null;
  if (after !== null && !isPosition(after)) {
    throw errors.badRequest("invalid_last_event_id", "Last-Event-ID must be a position like 1732300000000-0");
  }
  const info = await readableSession(context, stream.principal, id);
  if (hasReceivedEnd(info, after)) {
    endEmpty(stream, 204);
    return;
  }
  const admission = await admitConnection(context, stream.principal, stream.ip);
  if (after !== null) context.metrics.resumes.inc({ kind: "session" });
  const options = {
    sessionId: id,
    model: info.model ?? "unknown",
    createdAtMs: info.createdAt,
    includeUsage: info.metadata[INCLUDE_USAGE] === true,
  };
  await streamThroughDoor(context, stream, id, chatFrames(options, after), {
    admission,
    created: false,
    incarnation: readIncarnation(stream.principal, id, info),
    headers: { [SESSION_HEADER]: id },
  });
}

function translatorFor(id: string, info: Pick<SessionInfo, "model" | "createdAt">): ResponsesTranslator {
  return createResponsesTranslator({
    sessionId: id,
    model: info.model ?? "unknown",
    createdAtMs: info.createdAt,
  });
}

function translateAll(translator: ResponsesTranslator, events: Iterable<SessionEvent>): ResponsesTranslator {
  for (const event of events) translator.next(event);
  return translator;
}

export async function serveResponses(
  context: AppContext,
  stream: StreamRequest,
  body: unknown,
): Promise<void> {
  const request = responsesRequest(body);
  const started = await startDoorRun(context, stream.principal, stream.ip, request.run);
  const { id, session } = started;
  if (request.stream) {
    await streamThroughDoor(context, stream, id, responsesFrames(translatorFor(id, session), -1), {
      admission: started.admission,
      created: true,
      headers: { [SESSION_HEADER]: id },
      started,
    });
    return;
  }
  // In the background: answer once the run has begun (its `start`), and let it go on.
  const collected = await collectRun(context, stream, started, request.background ? () => true : undefined);
  if (stream.res.destroyed) return;
  const translator = translateAll(translatorFor(id, session), collected.events);
  const response = translator.response();
  if (response.status === "failed") {
    const terminal = collected.events.at(-1);
    if (terminal?.type === "error") {
      writeRunError(stream, id, terminal.code, terminal.message);
      return;
    }
  }
  writeJson(stream, 200, response, { [SESSION_HEADER]: id });
}

/** `starting_after` (or Last-Event-ID, the `id:` of the last event received): -1 for the whole stream. */
function startingAfter(stream: StreamRequest): number {
  const given = stream.query.starting_after ?? resumeId(stream.req, {});
  if (given === undefined) return -1;
  if (typeof given !== "string" || !/^\d{1,15}$/.test(given)) {
    throw errors.badRequest("invalid_request", "query.starting_after: must be a sequence number (0 or more)");
  }
  return Number(given);
}

export async function serveResponse(
  context: AppContext,
  rawId: unknown,
  stream: StreamRequest,
): Promise<void> {
  const responseId = typeof rawId === "string" ? rawId : "";
  const id = sessionIdOfResponse(responseId);
  if (id === null) throw errors.notFound(`no response ${responseId}: ids look like resp_<sessionId>`);
  parseSessionId(id);
  const streaming = stream.query.stream === "true";
  const after = streaming ? startingAfter(stream) : -1;
  const info = await readableSession(context, stream.principal, id);
  if (!streaming) {
    const events = (await storedEvents(context, id)).map(parseEvent);
    writeJson(stream, 200, translateAll(translatorFor(id, info), events).response(), {
      [SESSION_HEADER]: id,
    });
    return;
  }
  const admission = await admitConnection(context, stream.principal, stream.ip);
  if (after >= 0) context.metrics.resumes.inc({ kind: "session" });
  await streamThroughDoor(context, stream, id, responsesFrames(translatorFor(id, info), after), {
    admission,
    created: false,
    incarnation: readIncarnation(stream.principal, id, info),
    headers: { [SESSION_HEADER]: id },
  });
}
