/**
 * A run's request (Chat Completions shapes, as validated) in the Responses API's terms: messages as
 * input items, function tools, `max_output_tokens`, `reasoning.effort`, `text.format`; and what has
 * no equivalent there (`seed`, `stop`, participant names, audio input), refused before a run starts.
 */
import type { ChatCompletionContentPart } from "openai/resources/chat/completions";
import type {
  FunctionTool,
  ResponseCreateParamsStreaming,
  ResponseInputContent,
  ResponseInputItem,
} from "openai/resources/responses/responses";
import type { ChatMessage, ModelOptions, ModelRequest, UnsupportedField } from "./types.js";
import { outputTokenCap } from "./upstream.js";

/** What a valid run request holds that the Responses API cannot take. */
export function responsesUnsupported(
  request: Pick<ModelRequest, "messages" | "options">,
): UnsupportedField | null {
  const options = request.options ?? {};
  for (const field of ["seed", "stop"] as const) {
    if (options[field] !== undefined && options[field] !== null) {
      return { field, reason: `the Responses API (OPENAI_API=responses) has no \`${field}\`` };
    }
  }
  for (const [i, message] of request.messages.entries()) {
    if ("name" in message && message.name !== undefined) {
      return { field: `messages.${i}.name`, reason: "the Responses API has no participant names" };
    }
    if (message.role !== "user" || typeof message.content === "string") continue;
    const audio = message.content.findIndex((part) => part.type === "input_audio");
    if (audio >= 0) {
      return {
        field: `messages.${i}.content.${audio}`,
        reason: "the Responses API takes no input_audio parts",
      };
    }
  }
  return null;
}

/** The request in the Responses API's terms (exported for tests: what is sent for what). */
export function responsesParams(
  request: Pick<ModelRequest, "model" | "messages" | "options">,
  operatorCap: number | undefined,
): ResponseCreateParamsStreaming {
  const o: ModelOptions = request.options ?? {};
  const cap = outputTokenCap(o.max_completion_tokens, operatorCap);
  const params: ResponseCreateParamsStreaming = {
    model: request.model,
    input: request.messages.flatMap(toInputItems),
    stream: true,
    // As Chat Completions does by default: nothing is kept at the provider after the run.
    store: false,
  };
  if (o.tools !== undefined) params.tools = o.tools.map(toFunctionTool);
  if (o.tool_choice !== undefined) params.tool_choice = toToolChoice(o.tool_choice);
  if (o.parallel_tool_calls !== undefined) params.parallel_tool_calls = o.parallel_tool_calls;
  if (o.temperature !== undefined) params.temperature = o.temperature;
  if (o.top_p !== undefined) params.top_p = o.top_p;
  if (cap !== undefined) params.max_output_tokens = cap;
  if (o.reasoning_effort !== undefined) params.reasoning = { effort: o.reasoning_effort };
  if (o.response_format !== undefined) params.text = { format: toTextFormat(o.response_format) };
  return params;
}

function textOf(content: string | ReadonlyArray<{ type: string; text?: string; refusal?: string }>) {
  if (typeof content === "string") return content;
  return content.map((part) => part.text ?? part.refusal ?? "").join("");
}

function toInputItems(message: ChatMessage): ResponseInputItem[] {
  switch (message.role) {
    case "system":
    case "developer":
      return [
        {
          role: message.role,
          content:
            typeof message.content === "string"
              ? message.content
              : message.content.map((part) => ({ type: "input_text" as const, text: part.text })),
        },
      ];
    case "user":
      return [
        {
          role: "user",
          content:
            typeof message.content === "string" ? message.content : message.content.map(toInputContent),
        },
      ];
    case "assistant": {
      const items: ResponseInputItem[] = [];
      const text = message.content ? textOf(message.content) : (message.refusal ?? "");
      if (text !== "") items.push({ role: "assistant", content: text });
      for (const call of message.tool_calls ?? []) {
        if (call.type !== "function") continue;
        items.push({
          type: "function_call",
          call_id: call.id,
          name: call.function.name,
          arguments: call.function.arguments,
        });
      }
      return items;
    }
    case "tool":
      return [
        {
          type: "function_call_output",
          call_id: message.tool_call_id,
          output:
            typeof message.content === "string"
              ? message.content
              : message.content.map((part) => ({ type: "input_text" as const, text: part.text })),
        },
      ];
  }
}

function toInputContent(part: ChatCompletionContentPart): ResponseInputContent {
  switch (part.type) {
    case "text":
      return { type: "input_text", text: part.text };
    case "image_url":
      return { type: "input_image", image_url: part.image_url.url, detail: part.image_url.detail ?? "auto" };
    case "file":
      return { type: "input_file", ...part.file };
    case "input_audio":
      // Refused before the run starts (responsesUnsupported).
      throw new TypeError("input_audio parts have no Responses API equivalent");
  }
}

function toFunctionTool(tool: NonNullable<ModelOptions["tools"]>[number]): FunctionTool {
  const { name, description, parameters, strict } = tool.function;
  return {
    type: "function",
    name,
    ...(description === undefined ? {} : { description }),
    parameters: parameters ?? null,
    // Chat Completions' default; the Responses API's own default is strict.
    strict: strict ?? false,
  };
}

function toToolChoice(
  choice: NonNullable<ModelOptions["tool_choice"]>,
): ResponseCreateParamsStreaming["tool_choice"] {
  if (typeof choice === "string") return choice;
  switch (choice.type) {
    case "function":
      return { type: "function", name: choice.function.name };
    case "allowed_tools":
      return {
        type: "allowed_tools",
        mode: choice.allowed_tools.mode,
        tools: choice.allowed_tools.tools.map((tool) => {
          const fn = (tool as { function?: { name?: unknown } }).function;
          return tool.type === "function" && typeof fn?.name === "string"
            ? { type: "function", name: fn.name }
            : tool;
        }),
      };
    case "custom":
      return { type: "custom", name: choice.custom.name };
  }
}

function toTextFormat(
  format: NonNullable<ModelOptions["response_format"]>,
): NonNullable<NonNullable<ResponseCreateParamsStreaming["text"]>["format"]> {
  if (format.type !== "json_schema") return format;
  const { name, description, schema, strict } = format.json_schema;
  return {
    type: "json_schema",
    name,
    schema: schema ?? {},
    ...(description === undefined ? {} : { description }),
    ...(strict === undefined ? {} : { strict }),
  };
}
