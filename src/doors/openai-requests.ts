/**
 * OpenAI request bodies → a run's request. Chat Completions bodies are a run's body with a few names
 * of their own (`stream`, `stream_options`, `max_tokens`, `n`, `user`, `store`); Responses bodies are
 * turned into the Chat Completions form (input items → messages, function tools, `text.format`,
 * `max_output_tokens`, `reasoning.effort`). Either way the run's own schema (http/validation.ts) then
 * checks every field, so what the gateway would not pass on is a `400` naming it.
 */
import type { RunRequest } from "../agent/run-manager.js";
import { AppError } from "../errors.js";
import { runRequest } from "../http/run-body.js";
import { createSessionBody, parseOrThrow } from "../http/validation.js";

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json =>
  value !== null && typeof value === "object" && !Array.isArray(value);

function invalid(field: string, why: string): AppError {
  return new AppError("invalid_request", `body.${field}: ${why}`);
}

function optionalBoolean(body: Json, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw invalid(field, "must be a boolean");
  return value;
}

/** OpenAI's `metadata` (string values) and `user`, as the session's metadata. */
function metadataOf(body: Json, door: string): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  if (body.metadata !== undefined && body.metadata !== null) {
    if (!isObject(body.metadata)) throw invalid("metadata", "must be an object");
    Object.assign(metadata, body.metadata);
  }
  if (body.user !== undefined) {
    if (typeof body.user !== "string") throw invalid("user", "must be a string");
    metadata.user = body.user;
  }
  metadata.door = door;
  return metadata;
}

/** Fields a run's body has that OpenAI's does not: refused here, so they are not taken by accident. */
const GATEWAY_ONLY = ["message", "instructions", "id"];

export interface ChatCompletionsRequest {
  run: RunRequest;
  stream: boolean;
  includeUsage: boolean;
}

export function chatCompletionsRequest(raw: unknown): ChatCompletionsRequest {
  if (!isObject(raw)) throw new AppError("invalid_request", "body: send a JSON object");
  const { stream, stream_options, max_tokens, n, user, store, metadata, ...rest } = raw;
  for (const field of GATEWAY_ONLY) if (field in rest) throw invalid(field, "unknown field");
  if (rest.messages === undefined) throw invalid("messages", "required");
  const streaming = optionalBoolean(raw, "stream") ?? false;
  let includeUsage = false;
  if (stream_options !== undefined && stream_options !== null) {
    if (!streaming) throw invalid("stream_options", "only with `stream: true`");
    if (!isObject(stream_options)) throw invalid("stream_options", "must be an object");
    for (const key of Object.keys(stream_options)) {
      if (key !== "include_usage" && key !== "include_obfuscation")
        throw invalid(`stream_options.${key}`, "unknown field");
    }
    includeUsage = optionalBoolean(stream_options, "include_usage") ?? false;
  }
  if (n !== undefined && n !== null && n !== 1) throw invalid("n", "a run streams one choice: only 1");
  if (store !== undefined && store !== null && typeof store !== "boolean")
    throw invalid("store", "must be a boolean");
  const body: Json = { ...rest, messages: withoutAnswerFields(rest.messages) };
  if (max_tokens !== undefined && max_tokens !== null) {
    if (rest.max_completion_tokens !== undefined)
      throw invalid("max_tokens", "give max_completion_tokens only");
    body.max_completion_tokens = max_tokens;
  }
  const parsed = parseOrThrow(createSessionBody, body);
  return {
    run: { ...runRequest(parsed), metadata: metadataOf({ metadata, user }, "openai.chat") },
    stream: streaming,
    includeUsage,
  };
}

/**
 * Fields of an answer's message that are not a request's: an assistant message copied from a
 * completion (the SDK's `finalChatCompletion()` adds `parsed`) is taken without them.
 */
const ANSWER_ONLY_FIELDS = ["parsed", "annotations", "reasoning_content", "audio"];

function withoutAnswerFields(messages: unknown): unknown {
  if (!Array.isArray(messages)) return messages;
  return messages.map((message) => {
    if (!isObject(message) || message.role !== "assistant") return message;
    const copy: Json = { ...message };
    for (const field of ANSWER_ONLY_FIELDS) delete copy[field];
    if (copy.audio === undefined && message.audio !== undefined && message.audio !== null)
      copy.audio = message.audio;
    if (Array.isArray(copy.tool_calls)) {
      copy.tool_calls = copy.tool_calls.map((call) => {
        if (!isObject(call) || !isObject(call.function)) return call;
        const { parsed_arguments: _parsed, ...fn } = call.function;
        return { ...call, function: fn };
      });
    }
    return copy;
  });
}

export interface ResponsesRequest {
  run: RunRequest;
  stream: boolean;
  /** Answer at once (status `in_progress`); the run goes on, read it with GET /v1/responses/:id. */
  background: boolean;
}

/** Response fields the gateway takes as they are meant: there is no equivalent to pass on, or none needed. */
const RESPONSES_ACCEPTED = new Set([
  "model",
  "input",
  "instructions",
  "stream",
  "background",
  "store",
  "metadata",
  "user",
]);

/** Responses fields, mapped onto the run's (Chat Completions) names. */
const RESPONSES_PASSED = new Set([
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "temperature",
  "top_p",
  "max_output_tokens",
  "reasoning",
  "text",
]);

export function responsesRequest(raw: unknown): ResponsesRequest {
  if (!isObject(raw)) throw new AppError("invalid_request", "body: send a JSON object");
  for (const field of Object.keys(raw)) {
    if (field === "previous_response_id" || field === "conversation") {
      throw invalid(field, "not supported: send the whole conversation as `input`");
    }
    if (!RESPONSES_ACCEPTED.has(field) && !RESPONSES_PASSED.has(field)) throw invalid(field, "unknown field");
  }
  if (raw.input === undefined) throw invalid("input", "required");
  if (raw.instructions !== undefined && raw.instructions !== null && typeof raw.instructions !== "string") {
    throw invalid("instructions", "must be a string");
  }
  const body: Json = { messages: inputMessages(raw.input) };
  if (raw.model !== undefined) body.model = raw.model;
  if (typeof raw.instructions === "string") body.instructions = raw.instructions;
  if (raw.tools !== undefined) body.tools = functionTools(raw.tools);
  if (raw.tool_choice !== undefined) body.tool_choice = toolChoice(raw.tool_choice);
  for (const field of ["parallel_tool_calls", "temperature", "top_p"]) {
    if (raw[field] !== undefined) body[field] = raw[field];
  }
  if (raw.max_output_tokens !== undefined) body.max_completion_tokens = raw.max_output_tokens;
  if (raw.reasoning !== undefined && raw.reasoning !== null) {
    if (!isObject(raw.reasoning)) throw invalid("reasoning", "must be an object");
    for (const key of Object.keys(raw.reasoning)) {
      // `summary`: reasoning is streamed whenever the upstream sends it.
      if (key !== "effort" && key !== "summary") throw invalid(`reasoning.${key}`, "unknown field");
    }
    if (raw.reasoning.effort !== undefined) body.reasoning_effort = raw.reasoning.effort;
  }
  if (raw.text !== undefined && raw.text !== null) {
    if (!isObject(raw.text)) throw invalid("text", "must be an object");
    for (const key of Object.keys(raw.text))
      if (key !== "format") throw invalid(`text.${key}`, "unknown field");
    if (raw.text.format !== undefined) body.response_format = responseFormat(raw.text.format);
  }
  const parsed = parseOrThrow(createSessionBody, body);
  return {
    run: { ...runRequest(parsed), metadata: metadataOf(raw, "openai.responses") },
    stream: optionalBoolean(raw, "stream") ?? false,
    background: optionalBoolean(raw, "background") ?? false,
  };
}

function textOfParts(parts: unknown, field: string, kinds: readonly string[]): Json[] {
  if (!Array.isArray(parts)) throw invalid(field, "must be a string or an array of content parts");
  return parts.map((part, i) => {
    if (!isObject(part) || typeof part.type !== "string" || !kinds.includes(part.type)) {
      throw invalid(`${field}.${i}.type`, `must be one of ${kinds.join(", ")}`);
    }
    if (part.type === "input_image") {
      if (typeof part.image_url !== "string") throw invalid(`${field}.${i}.image_url`, "must be a URL");
      return {
        type: "image_url",
        image_url: { url: part.image_url, ...(part.detail === undefined ? {} : { detail: part.detail }) },
      };
    }
    if (part.type === "refusal") return { type: "refusal", refusal: part.refusal };
    return { type: "text", text: part.text };
  });
}

/** Responses `input` → Chat Completions messages. */
export function inputMessages(input: unknown): Json[] {
  if (typeof input === "string") return [{ role: "user", content: input }];
  if (!Array.isArray(input)) throw invalid("input", "must be a string or an array of items");
  const messages: Json[] = [];
  input.forEach((item, i) => {
    const field = `input.${i}`;
    if (!isObject(item)) throw invalid(field, "must be an object");
    const type = item.type ?? "message";
    if (type === "message") {
      const role = item.role;
      if (role === "assistant") {
        const content =
          typeof item.content === "string"
            ? item.content
            : textOfParts(item.content, `${field}.content`, ["output_text", "refusal"]);
        messages.push({ role, content });
      } else if (role === "user" || role === "system" || role === "developer") {
        const kinds = role === "user" ? ["input_text", "input_image"] : ["input_text"];
        const content =
          typeof item.content === "string"
            ? item.content
            : textOfParts(item.content, `${field}.content`, kinds);
        messages.push({ role, content });
      } else throw invalid(`${field}.role`, "must be user, system, developer or assistant");
    } else if (type === "function_call") {
      const call = {
        id: item.call_id,
        type: "function",
        function: { name: item.name, arguments: item.arguments },
      };
      const last = messages.at(-1);
      if (last?.role === "assistant" && Array.isArray(last.tool_calls)) last.tool_calls.push(call);
      else if (last?.role === "assistant" && last.tool_calls === undefined) last.tool_calls = [call];
      else messages.push({ role: "assistant", content: null, tool_calls: [call] });
    } else if (type === "function_call_output") {
      const output = item.output;
      const content =
        typeof output === "string"
          ? output
          : Array.isArray(output)
            ? output
                .map((part) => (isObject(part) && typeof part.text === "string" ? part.text : ""))
                .join("")
            : JSON.stringify(output ?? "");
      messages.push({ role: "tool", tool_call_id: item.call_id, content });
    } else if (type === "reasoning") {
      // The upstream takes no reasoning as input.
    } else
      throw invalid(`${field}.type`, "must be message, function_call, function_call_output or reasoning");
  });
  return messages;
}

function functionTools(tools: unknown): Json[] {
  if (!Array.isArray(tools)) throw invalid("tools", "must be an array");
  return tools.map((tool, i) => {
    if (!isObject(tool) || tool.type !== "function") throw invalid(`tools.${i}.type`, "only function tools");
    const { type: _type, name, description, parameters, strict, ...other } = tool;
    const unknown = Object.keys(other)[0];
    if (unknown !== undefined) throw invalid(`tools.${i}.${unknown}`, "unknown field");
    return {
      type: "function",
      function: {
        name,
        ...(description === undefined ? {} : { description }),
        ...(parameters === undefined || parameters === null ? {} : { parameters }),
        ...(strict === undefined ? {} : { strict }),
      },
    };
  });
}

function toolChoice(choice: unknown): unknown {
  if (typeof choice === "string") return choice;
  if (isObject(choice) && choice.type === "function")
    return { type: "function", function: { name: choice.name } };
  throw invalid("tool_choice", "must be auto, none, required or {type: function, name}");
}

function responseFormat(format: unknown): unknown {
  if (!isObject(format)) throw invalid("text.format", "must be an object");
  if (format.type !== "json_schema") return format;
  const { type: _type, name, schema, strict, description, ...other } = format;
  const unknown = Object.keys(other)[0];
  if (unknown !== undefined) throw invalid(`text.format.${unknown}`, "unknown field");
  return {
    type: "json_schema",
    json_schema: {
      name,
      ...(schema === undefined ? {} : { schema }),
      ...(strict === undefined ? {} : { strict }),
      ...(description === undefined ? {} : { description }),
    },
  };
}
