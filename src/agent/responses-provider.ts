/**
 * The Responses API upstream (`OPENAI_API=responses`): the run's Chat Completions request mapped onto
 * `client.responses.create({stream: true})`, and its stream events mapped onto the same model chunks
 * as the chat path (text, reasoning, refusals, function calls, usage, finish reason, errors).
 */
import type { ResponseStreamEvent, ResponseUsage } from "openai/resources/responses/responses";
import type { OpenAIProviderOptions } from "./openai-provider.js";
import { responsesParams } from "./responses-request.js";
import type { ModelChunk, ModelRequest, ToolCall, Usage } from "./types.js";
import { codeForErrorCode, readUpstream, type StreamTranslator, safeUpstreamError } from "./upstream.js";

export { responsesParams, responsesUnsupported } from "./responses-request.js";

export function createResponsesStream(
  { client, maxOutputTokens, timeoutMs }: OpenAIProviderOptions,
  request: ModelRequest,
): AsyncGenerator<ModelChunk> {
  const params = responsesParams(request, maxOutputTokens);
  return readUpstream(
    request,
    timeoutMs,
    (signal) => client.responses.create(params, { signal, timeout: timeoutMs }),
    responsesTranslator(),
  );
}

interface CallState extends ToolCall {
  done: boolean;
}

/**
 * Responses API events to model chunks. Function calls are numbered 0, 1, … in the order their items
 * appear (`index`), with `call_id` as their id (what a `tool` message answers). Reasoning summary
 * parts after the first of a run start with a blank line, so that the parts do not run together.
 */
export function responsesTranslator(): StreamTranslator<ResponseStreamEvent> {
  const calls = new Map<string, CallState>();
  const byOutputIndex = new Map<number, CallState>();
  let finishReason: string | undefined;
  let reasoningParts = 0;
  let lastReasoningPart = "";

  const callFor = (itemId: string, outputIndex: number) =>
    calls.get(itemId) ?? byOutputIndex.get(outputIndex);
  const complete = (call: CallState, args?: string, name?: string): ModelChunk[] => {
    if (call.done) return [];
    call.done = true;
    if (args !== undefined) call.arguments = args;
    if (name) call.name = name;
    return [
      { kind: "tool_call", index: call.index, id: call.id, name: call.name, arguments: call.arguments },
    ];
  };
  const reasoning = (part: string, delta: string): ModelChunk[] => {
    if (delta === "") return [];
    let content = delta;
    if (part !== lastReasoningPart) {
      lastReasoningPart = part;
      if (reasoningParts++ > 0) content = `\n\n${delta}`;
    }
    return [{ kind: "reasoning", content }];
  };

  return {
    next(event) {
      switch (event.type) {
        case "response.output_text.delta":
          return event.delta === "" ? [] : [{ kind: "token", content: event.delta }];
        case "response.reasoning_summary_text.delta":
          return reasoning(`${event.item_id}/s${event.summary_index}`, event.delta);
        case "response.reasoning_text.delta":
          return reasoning(`${event.item_id}/t${event.content_index}`, event.delta);
        case "response.refusal.delta":
          return event.delta === "" ? [] : [{ kind: "refusal", content: event.delta }];
        case "response.output_item.added": {
          const item = event.item;
          if (item.type !== "function_call") return [];
          const call: CallState = {
            index: calls.size,
            id: item.call_id,
            name: item.name,
            arguments: item.arguments ?? "",
            done: false,
          };
          calls.set(item.id ?? `#${event.output_index}`, call);
          byOutputIndex.set(event.output_index, call);
          return [
            {
              kind: "tool_call_delta",
              index: call.index,
              id: call.id,
              name: call.name,
              arguments: call.arguments,
            },
          ];
        }
        case "response.function_call_arguments.delta": {
          const call = callFor(event.item_id, event.output_index);
          if (!call || call.done || event.delta === "") return [];
          call.arguments += event.delta;
          return [{ kind: "tool_call_delta", index: call.index, arguments: event.delta }];
        }
        case "response.function_call_arguments.done": {
          const call = callFor(event.item_id, event.output_index);
          return call ? complete(call, event.arguments, event.name) : [];
        }
        case "response.output_item.done": {
          const item = event.item;
          if (item.type !== "function_call") return [];
          const call = callFor(item.id ?? "", event.output_index);
          return call ? complete(call, item.arguments, item.name) : [];
        }
        case "response.completed":
        case "response.incomplete": {
          const { response } = event;
          if (event.type === "response.completed") {
            finishReason = calls.size > 0 ? "tool_calls" : "stop";
          } else {
            const reason = response.incomplete_details?.reason;
            finishReason = reason === "content_filter" ? "content_filter" : "length";
          }
          return response.usage ? [{ kind: "usage", usage: responsesUsage(response.usage) }] : [];
        }
        case "response.failed":
          throw safeUpstreamError(codeForErrorCode(event.response.error?.code ?? null));
        case "error":
          throw safeUpstreamError(codeForErrorCode(event.code));
        default:
          return [];
      }
    },
    end() {
      if (finishReason === undefined) throw safeUpstreamError("upstream_disconnected");
      const pending = [...calls.values()].flatMap((call) => complete(call));
      return [...pending, { kind: "finish", reason: finishReason }];
    },
  };
}

function responsesUsage(usage: ResponseUsage): Usage {
  const reasoning = usage.output_tokens_details?.reasoning_tokens;
  const cached = usage.input_tokens_details?.cached_tokens;
  return {
    prompt_tokens: usage.input_tokens,
    completion_tokens: usage.output_tokens,
    total_tokens: usage.total_tokens,
    ...(typeof reasoning === "number" ? { reasoning_tokens: reasoning } : {}),
    ...(typeof cached === "number" ? { cached_tokens: cached } : {}),
  };
}
