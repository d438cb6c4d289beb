/** Request schemas (zod) and the one helper that turns a failed parse into a 400 naming the field. */
import { z } from "zod";
import { AppError, errors } from "../errors.js";

export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const EVENT_TYPE_PATTERN = /^[a-z][a-z0-9_.-]{0,31}$/;

export const sessionIdSchema = z.string().regex(SESSION_ID_PATTERN, "must match ^[A-Za-z0-9_-]{1,64}$");
const modelSchema = z.string().min(1).max(200);
const metadataSchema = z.record(z.string(), z.unknown());

/** A run's body (message or messages, model, instructions, and the fields passed to the model). */
export { agentStreamBody, createSessionBody } from "./run-body.js";

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

/** Top-level fields callers of OpenAI's API often send, and what to do instead. */
const UNKNOWN_FIELD_HINTS: Readonly<Record<string, string>> = {
  max_tokens: "use max_completion_tokens",
  n: "a run streams one choice",
  stream: "a run always streams",
};

export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown, where = "body"): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = specificIssue(result.error.issues[0]!);
  // A strict object names the field it does not know, not itself.
  const unknown = issue.code === "unrecognized_keys" ? issue.keys[0] : undefined;
  const path = unknown === undefined ? issue.path : [...issue.path, unknown];
  const field = path.length > 0 ? `${where}.${path.join(".")}` : where;
  const hint = unknown !== undefined && issue.path.length === 0 ? UNKNOWN_FIELD_HINTS[unknown] : undefined;
  const message = unknown === undefined ? issue.message : `unknown field${hint ? ` (${hint})` : ""}`;
  throw new AppError("invalid_request", `${field}: ${message}`);
}

/**
 * Where a union failed, the failure of the branch that came closest (the deepest one that got past
 * the value's type), with its full path: `content.0.type`, not `content: Invalid input`.
 */
function specificIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue;
  const branches = issue.errors.flatMap((branch) =>
    branch[0] ? [specificIssue({ ...branch[0], path: [...issue.path, ...branch[0].path] })] : [],
  );
  const closest = branches
    .filter((branch) => branch.code !== "invalid_type" || branch.path.length > issue.path.length)
    .sort((a, b) => b.path.length - a.path.length)[0];
  if (closest) return closest;
  const expected = branches.flatMap((branch) => (branch.code === "invalid_type" ? [branch.expected] : []));
  if (expected.length === 0) return issue;
  return { ...issue, message: `Invalid input: expected ${[...new Set(expected)].join(" or ")}` };
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
