/** Request schemas (zod) and the one helper that turns a failed parse into a 400 naming the field. */
import { z } from "zod";
import { AppError, errors } from "../errors.js";

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
  throw new AppError("invalid_request", `${field}: ${issue.message}`);
}

export function parseSessionId(value: unknown): string {
  if (typeof value !== "string" || !SESSION_ID_PATTERN.test(value)) {
    throw new AppError("invalid_session_id", "session id must match ^[A-Za-z0-9_-]{1,64}$");
  }
  return value;
}

/** Refuses JSON nested deeper than `maxDepth` (it costs the validators and the store). */
export function assertJsonDepth(value: unknown, maxDepth: number): void {
  if (value !== undefined && depthOf(value, 1, maxDepth) > maxDepth) {
    throw errors.badRequest(
      "too_deep",
      `the JSON body nests deeper than ${maxDepth} levels (MAX_JSON_DEPTH)`,
    );
  }
}

function depthOf(value: unknown, depth: number, maxDepth: number): number {
  if (depth > maxDepth || value === null || typeof value !== "object") return depth;
  let deepest = depth;
  for (const child of Object.values(value)) {
    deepest = Math.max(deepest, depthOf(child, depth + 1, maxDepth));
    if (deepest > maxDepth) break;
  }
  return deepest;
}
