/**
 * A run's answer so far, folded from its session events: what the non-streaming doors answer (the
 * assembled `chat.completion`, the `response` object) and what a snapshot stands for.
 */
import type { EventToolCall, EventUsage, SessionEvent, TerminalEvent } from "./events.js";

export interface AnswerToolCall {
  index: number;
  id: string;
  name: string;
  arguments: string;
  /** Its `tool_call` event came (the arguments are whole). */
  complete: boolean;
}

export interface Answer {
  model: string | null;
  createdAtMs: number | null;
  content: string;
  reasoning: string;
  refusal: string;
  /** In index order. */
  toolCalls: AnswerToolCall[];
  usage: EventUsage | null;
  terminal: TerminalEvent | null;
}

export function emptyAnswer(): Answer {
  return {
    model: null,
    createdAtMs: null,
    content: "",
    reasoning: "",
    refusal: "",
    toolCalls: [],
    usage: null,
    terminal: null,
  };
}

function callAt(answer: Answer, index: number): AnswerToolCall {
  let call = answer.toolCalls.find((each) => each.index === index);
  if (!call) {
    call = { index, id: `call_${index}`, name: "", arguments: "", complete: false };
    answer.toolCalls.push(call);
    answer.toolCalls.sort((a, b) => a.index - b.index);
  }
  return call;
}

function addDelta(answer: Answer, delta: EventToolCall): void {
  const call = callAt(answer, delta.index);
  if (delta.id !== undefined) call.id = delta.id;
  if (delta.name !== undefined) call.name = delta.name;
  call.arguments += delta.arguments;
}

/** Folds one event into the answer (in place); returns it. */
export function foldEvent(answer: Answer, event: SessionEvent): Answer {
  switch (event.type) {
    case "start":
      answer.model = event.model;
      answer.createdAtMs = event.createdAtMs;
      break;
    case "token":
      answer.content += event.content;
      break;
    case "reasoning":
      answer.reasoning += event.content;
      break;
    case "refusal":
      answer.refusal += event.content;
      break;
    case "tool_call_delta":
      addDelta(answer, event);
      break;
    case "tool_call": {
      const call = callAt(answer, event.index);
      call.id = event.id;
      call.name = event.name;
      call.arguments = event.arguments;
      call.complete = true;
      break;
    }
    case "usage":
      answer.usage = event.usage;
      break;
    case "done":
    case "error":
    case "cancelled":
      answer.terminal = event;
      break;
    case "snapshot":
      // It replaces what came before it: it is the session up to its position.
      answer.content = event.content;
      answer.reasoning = event.reasoning;
      answer.refusal = event.refusal;
      answer.toolCalls = [];
      for (const call of event.toolCalls) {
        addDelta(answer, call);
        // A folded call whose `tool_call` was folded too has whole arguments; the snapshot does not
        // say which, so a call with an id and a name counts as complete once the session has ended.
      }
      if (event.usage) answer.usage = event.usage;
      break;
    case "other":
      break;
  }
  return answer;
}

export function foldEvents(events: Iterable<SessionEvent>): Answer {
  const answer = emptyAnswer();
  for (const event of events) foldEvent(answer, event);
  return answer;
}
