/**
 * The doors' frame encoders (a session's stored events → the SSE text of one door) and the sinks a
 * `DoorStream` hands events to: an SSE response, or a collector for one JSON answer.
 */
import type { SseWriter } from "../sse/writer.js";
import { comparePositions } from "../store/positions.js";
import type { StoredEvent } from "../store/types.js";
import type { DoorSink } from "./door-stream.js";
import { isTerminal, parseEvent, type SessionEvent } from "./events.js";
import { type ChatDoorOptions, createChatTranslator } from "./openai-chat.js";
import type { ResponsesTranslator } from "./openai-responses.js";
import { createUIMessageTranslator, UI_DONE, type UIMessageOptions } from "./ui-message.js";

/** The frames one stored event becomes; `ended` once the session's terminal event is encoded. */
export interface Encoded {
  text: string;
  ended: boolean;
}

export type FrameEncoder = (event: StoredEvent) => Encoded;

const dataFrame = (data: string) => `data: ${data}\n\n`;

/**
 * Chat Completions frames. The last frame of each event carries the event's position as `id:`, so
 * `Last-Event-ID` names a point between two events' frames; a resume replays the session and skips
 * every event at or before `after`.
 */
export function chatFrames(options: ChatDoorOptions, after: string | null): FrameEncoder {
  const translate = createChatTranslator(options);
  return (event) => {
    const parsed = parseEvent(event);
    const payloads = translate(parsed);
    const ended = isTerminal(parsed);
    if (payloads.length === 0 || (after !== null && comparePositions(event.id, after) <= 0)) {
      return { text: "", ended };
    }
    let text = "";
    const last = payloads.length - 1;
    for (let i = 0; i < last; i++) text += dataFrame(payloads[i]!);
    text += `id: ${event.id}\n${dataFrame(payloads[last]!)}`;
    return { text, ended };
  };
}

/** Responses frames (`event: <type>`, `data:` with its `sequence_number`, `id:` the same number), after `startingAfter`. */
export function responsesFrames(translator: ResponsesTranslator, startingAfter: number): FrameEncoder {
  return (event) => {
    const parsed = parseEvent(event);
    let text = "";
    for (const out of translator.next(parsed)) {
      if (out.sequence_number <= startingAfter) continue;
      text += `id: ${out.sequence_number}\nevent: ${out.type}\n${dataFrame(JSON.stringify(out))}`;
    }
    return { text, ended: isTerminal(parsed) };
  };
}

/** UI message stream frames (`data: {"type": …}`, then `data: [DONE]`). */
export function uiMessageFrames(options: UIMessageOptions): FrameEncoder {
  const translate = createUIMessageTranslator(options);
  return (event) => {
    const parsed = parseEvent(event);
    let text = "";
    for (const chunk of translate(parsed))
      text += dataFrame(chunk === null ? UI_DONE : JSON.stringify(chunk));
    return { text, ended: isTerminal(parsed) };
  };
}

/** Frames to an SSE response; the response ends after the session's terminal event. */
export function sseSink(writer: SseWriter, encode: FrameEncoder): DoorSink {
  return {
    get writable() {
      return writer.writable;
    },
    take(events) {
      let text = "";
      let ended = false;
      for (const event of events) {
        const encoded = encode(event);
        text += encoded.text;
        if (encoded.ended) {
          ended = true;
          break;
        }
      }
      if (ended) writer.end(text);
      else if (text !== "") writer.send(text);
      return ended;
    },
    abandon() {
      writer.end();
    },
  };
}

/** Collects a session's events for one answer (a non-streaming request). */
export interface Collector extends DoorSink {
  readonly events: SessionEvent[];
}

/** `until`: the door has what it needs (default: the session's terminal event). */
export function collectorSink(until: (event: SessionEvent) => boolean = isTerminal): Collector {
  const events: SessionEvent[] = [];
  return {
    events,
    writable: true,
    take(batch) {
      for (const stored of batch) {
        const event = parseEvent(stored);
        events.push(event);
        if (until(event)) return true;
      }
      return false;
    },
  };
}
