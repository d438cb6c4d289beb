/** Request schemas (zod) and the one helper that turns a failed parse into a 400 naming the field. */
import { z } from "zod";
import { AppError } from "../errors.js";

export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const EVENT_TYPE_PATTERN = /^[a-z][a-z0-9_.-]{0,31}$/;

export const sessionIdSchema = z.string().regex(SESSION_ID_PATTERN, "must match ^[A-Za-z0-9_-]{1,64}$");
const modelSchema = z.string().min(1).max(200);
const metadataSchema = z.record(z.string(), z.unknown());
const messageSchema = z.string().min(1, "must not be empty").max(1_000_000);

export const chatMessageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string().max(1_000_000),
});

export const agentStreamBody = z.object({
  message: messageSchema,
  model: modelSchema.optional(),
  instructions: z.string().max(100_000).optional(),
});

export const createSessionBody = z
  .object({
    message: messageSchema.optional(),
    messages: z.array(chatMessageSchema).min(1).max(1000).optional(),
    model: modelSchema.optional(),
    instructions: z.string().max(100_000).optional(),
    id: sessionIdSchema.optional(),
    metadata: metadataSchema.optional(),
  })
  .refine((body) => body.message !== undefined || body.messages !== undefined, {
    message: "give `message` or `messages`",
    path: ["message"],
  });

export const eventSchema = z.object({
  type: z.string().regex(EVENT_TYPE_PATTERN, "must match ^[a-z][a-z0-9_.-]{0,31}$"),
  data: z.record(z.string(), z.unknown()),
});

export const appendEventsBody = z.object({
  events: z.array(eventSchema).min(1, "must hold at least one event"),
  metadata: metadataSchema.optional(),
  model: modelSchema.optional(),
});

export const subscriptionCreateBody = z.object({
  sessions: z.array(z.string()).max(1_000_000),
});

export const subscriptionPatchBody = z
  .object({
    add: z.array(z.string()).optional(),
    remove: z.array(z.string()).optional(),
  })
  .refine((body) => body.add !== undefined || body.remove !== undefined, {
    message: "give `add` or `remove`",
  });

export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown, where = "body"): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.length > 0 ? `${where}.${issue.path.join(".")}` : where;
  throw new AppError(400, "invalid_request", `${field}: ${issue.message}`);
}

export function parseSessionId(value: unknown): string {
  if (typeof value !== "string" || !SESSION_ID_PATTERN.test(value)) {
    throw new AppError(400, "invalid_session_id", "session id must match ^[A-Za-z0-9_-]{1,64}$");
  }
  return value;
}
