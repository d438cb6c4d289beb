/**
 * The simulated model's tool use: which tool it calls, with what arguments (valid against the tool's
 * JSON schema where it is simple), and what it says once a tool answered. Deterministic for a given
 * prompt, like the rest of the simulated model.
 */
import type { ChatCompletionFunctionTool } from "openai/resources/chat/completions";
import type { ChatMessage, ModelOptions } from "./types.js";

type Schema = Record<string, unknown>;

/** How deep nested objects and arrays are filled in; deeper ones are left empty. */
const MAX_SCHEMA_DEPTH = 6;

/** The text of a message's content, whatever its form (string, parts, absent). */
export function messageText(message: ChatMessage): string {
  const { content } = message;
  if (typeof content === "string") return content;
  if (!content) return "";
  return content
    .map((part) => (part.type === "text" ? part.text : part.type === "refusal" ? part.refusal : ""))
    .join(" ");
}

/** The tool the model calls, or null when it answers in text (no tools, `tool_choice: "none"`). */
export function chooseTool(options: ModelOptions, random: () => number): ChatCompletionFunctionTool | null {
  const tools = (options.tools ?? []).filter((tool) => tool.type === "function");
  const choice = options.tool_choice;
  if (tools.length === 0 || choice === "none") return null;
  let candidates = tools;
  if (typeof choice === "object" && choice.type === "function") {
    candidates = tools.filter((tool) => tool.function.name === choice.function.name);
  } else if (typeof choice === "object" && choice.type === "allowed_tools") {
    const allowed = new Set(
      choice.allowed_tools.tools.map((tool) => (tool as { function?: { name?: unknown } }).function?.name),
    );
    candidates = tools.filter((tool) => allowed.has(tool.function.name));
  }
  return candidates[Math.floor(random() * candidates.length)] ?? null;
}

/**
 * Arguments for a call, as JSON text: every required property filled in (strings from the prompt,
 * numbers within their bounds, booleans, the first enum value), optional ones left out.
 */
export function sampleArguments(tool: ChatCompletionFunctionTool, prompt: string): string {
  const words = prompt.match(/[\p{L}\p{N}][\p{L}\p{N}'-]*/gu) ?? [];
  const subject = words.at(-1) ?? "example";
  const value = sample(tool.function.parameters ?? { type: "object", properties: {} }, subject, 0);
  return JSON.stringify(value ?? {});
}

function sample(schema: Schema, subject: string, depth: number): unknown {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  if ("const" in schema) return schema.const;
  if ("default" in schema) return schema.default;
  for (const key of ["anyOf", "oneOf", "allOf"] as const) {
    const first = Array.isArray(schema[key]) ? (schema[key] as unknown[])[0] : undefined;
    if (isSchema(first)) return sample(first, subject, depth);
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "string":
      return typeof schema.format === "string" && schema.format === "date"
        ? "2026-01-01"
        : subject.slice(0, typeof schema.maxLength === "number" ? schema.maxLength : undefined);
    case "integer":
    case "number": {
      const min = typeof schema.minimum === "number" ? schema.minimum : 1;
      const max = typeof schema.maximum === "number" ? schema.maximum : Math.max(min, 3);
      const value = Math.min(max, Math.max(min, 3));
      return type === "integer" ? Math.ceil(value) : value;
    }
    case "boolean":
      return true;
    case "null":
      return null;
    case "array": {
      const count = typeof schema.minItems === "number" ? schema.minItems : 0;
      const items = isSchema(schema.items) ? schema.items : {};
      if (depth >= MAX_SCHEMA_DEPTH) return [];
      return Array.from({ length: Math.min(count, 10) }, () => sample(items, subject, depth + 1));
    }
    case "object":
    case undefined: {
      const properties = isSchema(schema.properties) ? schema.properties : {};
      const required = Array.isArray(schema.required) ? schema.required : [];
      const out: Record<string, unknown> = {};
      if (depth >= MAX_SCHEMA_DEPTH) return out;
      for (const name of required) {
        if (typeof name !== "string") continue;
        const property = properties[name];
        out[name] = sample(isSchema(property) ? property : { type: "string" }, subject, depth + 1);
      }
      return out;
    }
    default:
      return null;
  }
}

function isSchema(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * When the last message is a tool's result: the opening words of the answer, which name the tool and
 * quote the start of what it returned.
 */
export function answerToToolResult(messages: readonly ChatMessage[]): string[] | null {
  const last = messages.at(-1);
  if (last?.role !== "tool") return null;
  let name = "the tool";
  for (const message of messages) {
    if (message.role !== "assistant") continue;
    const call = message.tool_calls?.find((candidate) => candidate.id === last.tool_call_id);
    if (call?.type === "function") name = call.function.name;
  }
  const result = messageText(last).replace(/\s+/g, " ").trim();
  const quoted = result.length > 80 ? `${result.slice(0, 77)}…` : result;
  const sentence = `(Simulated) ${name} returned ${quoted === "" ? "nothing" : quoted}.`;
  return sentence.split(" ").map((word, i) => (i === 0 ? word : ` ${word}`));
}

/** Splits JSON text into fragments of about `size` characters, as a model streams arguments. */
export function fragments(text: string, size: number): string[] {
  // By code points: a fragment never ends inside a surrogate pair.
  const chars = Array.from(text);
  const parts: string[] = [];
  for (let i = 0; i < chars.length; i += size) parts.push(chars.slice(i, i + size).join(""));
  return parts;
}
