/**
 * The body of a request that starts a run (`POST /api/v1/sessions`, `POST /api/v1/agent/stream`):
 * zod schemas that follow the `openai` SDK's own Chat Completions types (checked at compile time
 * below), strict at every level, so a field the gateway would not pass on is a `400` naming it.
 */
import { z } from "zod";
import type { RunRequest } from "../agent/run-manager.js";
import type { ChatMessage, ModelOptions } from "../agent/types.js";
import { MODEL_OPTION_FIELDS } from "../agent/types.js";

/** Text of one message or part: the body limit (MAX_BODY_BYTES) bounds the total. */
const MAX_TEXT = 1_000_000;
const MAX_MESSAGES = 1000;
const MAX_PARTS = 100;
/** OpenAI's own limits on tools per request. */
const MAX_TOOLS = 128;
const MAX_STOP_SEQUENCES = 4;

const text = z.string().max(MAX_TEXT);
const participantName = z.string().min(1).max(256);
const identifier = z.string().min(1).max(256);
/** Function and schema names as OpenAI accepts them; session ids (validation.ts, which imports this file) too. */
const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const functionName = z.string().regex(NAME_PATTERN, "must match ^[A-Za-z0-9_-]{1,64}$");
const sessionId = z.string().regex(NAME_PATTERN, "must match ^[A-Za-z0-9_-]{1,64}$");
const jsonObject = z.record(z.string(), z.unknown());

const textPart = z.strictObject({ type: z.literal("text"), text });
const refusalPart = z.strictObject({ type: z.literal("refusal"), refusal: text });
const imagePart = z.strictObject({
  type: z.literal("image_url"),
  image_url: z.strictObject({
    url: z.string().min(1).max(MAX_TEXT),
    detail: z.enum(["auto", "low", "high"]).optional(),
  }),
});
const audioPart = z.strictObject({
  type: z.literal("input_audio"),
  input_audio: z.strictObject({ data: z.string().max(MAX_TEXT), format: z.enum(["wav", "mp3"]) }),
});
const filePart = z.strictObject({
  type: z.literal("file"),
  file: z.strictObject({
    file_data: z.string().max(MAX_TEXT).optional(),
    file_id: identifier.optional(),
    filename: z.string().max(1000).optional(),
  }),
});
const parts = <T extends z.ZodType>(part: T) => z.array(part).min(1).max(MAX_PARTS);
const textContent = z.union([text, parts(textPart)]);

const toolCall = z.strictObject({
  id: identifier,
  type: z.literal("function"),
  function: z.strictObject({ name: functionName, arguments: text }),
});

const messageSchema = z.discriminatedUnion("role", [
  z.strictObject({ role: z.literal("system"), content: textContent, name: participantName.optional() }),
  z.strictObject({ role: z.literal("developer"), content: textContent, name: participantName.optional() }),
  z.strictObject({
    role: z.literal("user"),
    content: z.union([text, parts(z.discriminatedUnion("type", [textPart, imagePart, audioPart, filePart]))]),
    name: participantName.optional(),
  }),
  z.strictObject({
    role: z.literal("assistant"),
    content: z
      .union([text, parts(z.discriminatedUnion("type", [textPart, refusalPart])), z.null()])
      .optional(),
    refusal: text.nullable().optional(),
    tool_calls: z.array(toolCall).min(1).max(MAX_TOOLS).optional(),
    name: participantName.optional(),
  }),
  z.strictObject({ role: z.literal("tool"), content: textContent, tool_call_id: identifier }),
]);

const functionTool = z.strictObject({
  type: z.literal("function"),
  function: z.strictObject({
    name: functionName,
    description: text.optional(),
    parameters: jsonObject.optional(),
    strict: z.boolean().nullable().optional(),
  }),
});

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.strictObject({ type: z.literal("function"), function: z.strictObject({ name: functionName }) }),
  z.strictObject({
    type: z.literal("allowed_tools"),
    allowed_tools: z.strictObject({
      mode: z.enum(["auto", "required"]),
      tools: z.array(jsonObject).min(1).max(MAX_TOOLS),
    }),
  }),
]);

const responseFormat = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text") }),
  z.strictObject({ type: z.literal("json_object") }),
  z.strictObject({
    type: z.literal("json_schema"),
    json_schema: z.strictObject({
      name: functionName,
      description: text.optional(),
      schema: jsonObject.optional(),
      strict: z.boolean().nullable().optional(),
    }),
  }),
]);

/** The fields passed to the upstream as given (`ModelOptions`). */
const optionFields = {
  tools: z.array(functionTool).min(1).max(MAX_TOOLS).optional(),
  tool_choice: toolChoice.optional(),
  parallel_tool_calls: z.boolean().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  max_completion_tokens: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  response_format: responseFormat.optional(),
  reasoning_effort: z
    .enum(["none", "minimal", "low", "medium", "high", "xhigh", "max"])
    .nullable()
    .optional(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  stop: z
    .union([text, z.array(text).min(1).max(MAX_STOP_SEQUENCES)])
    .nullable()
    .optional(),
};

// Compile-time proof that what validates is what the SDK takes.
const _messages: z.ZodType<ChatMessage> = messageSchema;
const _options: z.ZodType<ModelOptions> = z.strictObject(optionFields);
void _messages;
void _options;

const runFields = {
  message: z.string().min(1, "must not be empty").max(MAX_TEXT).optional(),
  messages: z.array(messageSchema).min(1).max(MAX_MESSAGES).optional(),
  model: z.string().min(1).max(200).optional(),
  instructions: z.string().max(100_000).optional(),
  ...optionFields,
};

type RunFields = z.infer<z.ZodObject<typeof runFields>>;

/** What the shapes cannot say: one of message/messages, tool results that answer a call, known tools. */
function checkRun(body: RunFields, ctx: z.RefinementCtx): void {
  if (body.message === undefined && body.messages === undefined) {
    ctx.addIssue({ code: "custom", path: ["message"], message: "give `message` or `messages`" });
  } else if (body.message !== undefined && body.messages !== undefined) {
    ctx.addIssue({ code: "custom", path: ["messages"], message: "give `message` or `messages`, not both" });
  }
  const callIds = new Set<string>();
  for (const [i, message] of (body.messages ?? []).entries()) {
    if (message.role === "assistant") {
      for (const call of message.tool_calls ?? []) callIds.add(call.id);
      const empty = message.content === undefined || message.content === null;
      if (empty && !message.tool_calls && typeof message.refusal !== "string") {
        ctx.addIssue({
          code: "custom",
          path: ["messages", i, "content"],
          message: "an assistant message needs `content`, `tool_calls` or `refusal`",
        });
      }
    } else if (message.role === "tool" && !callIds.has(message.tool_call_id)) {
      ctx.addIssue({
        code: "custom",
        path: ["messages", i, "tool_call_id"],
        message: "answers no tool call of an earlier assistant message",
      });
    }
  }
  const names = new Set((body.tools ?? []).map((tool) => tool.function.name));
  const choice = body.tool_choice;
  if (choice !== undefined && body.tools === undefined && choice !== "none") {
    ctx.addIssue({ code: "custom", path: ["tool_choice"], message: "needs `tools`" });
  } else if (typeof choice === "object" && choice.type === "function" && !names.has(choice.function.name)) {
    ctx.addIssue({
      code: "custom",
      path: ["tool_choice", "function", "name"],
      message: "names no tool in `tools`",
    });
  }
  if (body.parallel_tool_calls !== undefined && body.tools === undefined) {
    ctx.addIssue({ code: "custom", path: ["parallel_tool_calls"], message: "needs `tools`" });
  }
}

export const agentStreamBody = z.strictObject(runFields).superRefine(checkRun);

export const createSessionBody = z
  .strictObject({ ...runFields, id: sessionId.optional(), metadata: jsonObject.optional() })
  .superRefine(checkRun);

/** The run a validated body asks for. */
export function runRequest(
  body: RunFields & { id?: string; metadata?: Record<string, unknown> },
): RunRequest {
  const messages: ChatMessage[] = body.messages ?? [{ role: "user", content: body.message ?? "" }];
  const options: ModelOptions = {};
  for (const field of MODEL_OPTION_FIELDS) {
    if (body[field] !== undefined) Object.assign(options, { [field]: body[field] });
  }
  return {
    messages,
    ...(Object.keys(options).length > 0 ? { options } : {}),
    ...(body.id !== undefined ? { id: body.id } : {}),
    ...(body.model !== undefined ? { model: body.model } : {}),
    ...(body.instructions !== undefined ? { instructions: body.instructions } : {}),
    ...(body.metadata !== undefined ? { metadata: body.metadata } : {}),
  };
}
