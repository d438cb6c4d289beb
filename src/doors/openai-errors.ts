/**
 * OpenAI's error shape, `{error: {message, type, code, param}}`, for the `/v1` routes: the gateway's
 * own errors (the one catalogue, errors.ts) keep their status and code; `type` is OpenAI's word for
 * the status, and `param` names the field of a `400` (`messages.0.content`). A run that fails is told
 * the same way, in the stream or as the answer of a non-streaming request.
 */
import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import { type ErrorWriter, isExpectedOutage, logStreamFailure, toAppError } from "../errors.js";

export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

function typeOfStatus(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 409) return "conflict_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** `body.messages.0.content: why` → `messages.0.content`. */
function paramOf(message: string): string | null {
  const match = /^body\.([^:\s]+):/.exec(message);
  return match ? match[1]! : null;
}

/** What ended a run, as an HTTP answer would say it (non-streaming requests). */
const RUN_ERROR_STATUS: Readonly<Record<string, number>> = {
  upstream_bad_request: 400,
  upstream_rate_limited: 429,
  upstream_auth: 502,
  upstream_error: 502,
  upstream_disconnected: 502,
  interrupted: 502,
  upstream_unavailable: 503,
  store_unavailable: 503,
  upstream_timeout: 504,
  cancelled: 409,
};

export function runErrorStatus(code: string): number {
  return RUN_ERROR_STATUS[code] ?? 500;
}

/** The error body for a run that ended with `error {code, message}` (or was cancelled). */
export function runErrorBody(code: string, message: string): OpenAIErrorBody {
  return { error: { message, type: typeOfStatus(runErrorStatus(code)), code, param: null } };
}

export function openAIErrorBody(status: number, code: string, message: string): OpenAIErrorBody {
  return {
    error: { message, type: typeOfStatus(status), code, param: status === 400 ? paramOf(message) : null },
  };
}

/** Writes a JSON error answer (the caller knows the head is not out yet). */
export function writeOpenAIError(
  res: ServerResponse,
  status: number,
  body: OpenAIErrorBody,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** The error writer of the `/v1` routes: as errors.ts's, in OpenAI's shape. */
export function createOpenAIErrorWriter(logger: Logger, storeReady: () => boolean): ErrorWriter {
  return {
    send(res, error, headers = {}) {
      if (res.headersSent) {
        logStreamFailure(logger, res, error, storeReady, headers);
        res.end();
        return;
      }
      const appError = toAppError(error, storeReady);
      if (isExpectedOutage(appError)) {
        (res as { failure?: { code: string; message: string } }).failure = {
          code: appError.code,
          message: appError.message,
        };
      } else if (appError.status >= 500) logger.error({ err: error }, "request failed");
      writeOpenAIError(
        res,
        appError.status,
        openAIErrorBody(appError.status, appError.code, appError.message),
        {
          ...headers,
          ...appError.headers,
        },
      );
    },
  };
}
