/**
 * A small typed client for the gateway: many sessions on ONE EventSource, plus the JSON API calls
 * that go with it. It has no imports on purpose: tsc compiles it to `dist/client/index.js`, which the
 * gateway serves as a plain ES module at `/client.js`. In Node 20, pass an EventSource
 * implementation (`import { EventSource } from "eventsource"`) and an absolute `baseUrl`.
 *
 * Multiplexed events are named `<sessionId>:<type>`, so a single `onmessage` sees none of them: the
 * client adds one listener per (session, known type), and adds or removes them as the connection's
 * sessions change (`connected`, `subscribed`, `add()`, and `@sessions:created` on a subscription).
 * Resuming is the EventSource's own job: it reconnects by itself and sends the last cursor as
 * `Last-Event-ID`, so the client never re-creates it and only reports the state.
 */

export interface StartData {
  model: string;
  createdAt: string;
  simulated?: boolean;
}
export interface UsageData {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Reasoning tokens among the completion tokens, when the upstream reports them. */
  reasoning_tokens?: number;
  /** Prompt tokens served from the upstream's cache, when it reports them. */
  cached_tokens?: number;
}
/** A tool call as it streams: `arguments` is the next fragment; `id` and `name` come with its first delta. */
export interface ToolCallDeltaData {
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}
/** A complete tool call (`arguments`: the whole JSON text). The gateway does not run it: the caller does. */
export interface ToolCallData {
  index: number;
  id: string;
  name: string;
  arguments: string;
}
export interface DoneData {
  session_id: string;
  total_tokens: number;
  finish_reason: string;
}
export interface ErrorData {
  code: string;
  message: string;
}
export interface CancelledData {
  reason: string;
}
/** The session so far, folded by compaction: it replaces what the reader had of the session. */
export interface SnapshotData {
  content: string;
  reasoning: string;
  refusal: string;
  tool_calls: Array<{ index: number; id?: string; name?: string; arguments: string }>;
  usage: UsageData | null;
  /** How many events of each type were folded. */
  folded: Record<string, number>;
}
export interface GapData {
  requested: string;
  oldest: string | null;
}
export interface CreatedData {
  id: string;
  model: string;
  metadata: Record<string, unknown>;
  createdAt: string;
}
export interface EndedData {
  id: string;
  status: string;
}

/** Handlers for one session (or, as `ConnectOptions.handlers`, for every session). */
export interface SessionHandlers {
  onStart?(data: StartData, sessionId: string): void;
  onToken?(content: string, sessionId: string): void;
  /** Reasoning text (a reasoning model's thinking, or its summary): apart from the answer. */
  onReasoning?(content: string, sessionId: string): void;
  /** Refusal text: the model declined; the run still ends with `done`. */
  onRefusal?(content: string, sessionId: string): void;
  onToolCallDelta?(data: ToolCallDeltaData, sessionId: string): void;
  onToolCall?(data: ToolCallData, sessionId: string): void;
  onUsage?(usage: UsageData, sessionId: string): void;
  onDone?(data: DoneData, sessionId: string): void;
  onError?(data: ErrorData, sessionId: string): void;
  onCancelled?(data: CancelledData, sessionId: string): void;
  onGap?(data: GapData, sessionId: string): void;
  /** A reader behind compacted history: the session so far, which replaces what it had; events follow. */
  onSnapshot?(data: SnapshotData, sessionId: string): void;
  onUnknown?(sessionId: string): void;
  /** Every session event, after its typed handler; custom types only when listed in `extraTypes`. */
  onEvent?(type: string, data: unknown, sessionId: string): void;
}

/** The `@sessions` lifecycle feed, when `@sessions` is among the connection's sessions. */
export interface LifecycleHandlers {
  onCreated?(data: CreatedData): void;
  onEnded?(data: EndedData): void;
}

export type ConnectionState = "connecting" | "live" | "reconnecting" | "closed";

export interface StateInfo {
  connectionId?: string;
  /** On "live": the EventSource sent a cursor, so every session goes on where it stopped. */
  resumed?: boolean;
  /** On "closed", when the EventSource implementation reports it (e.g. 204). */
  status?: number;
}

/** What the client needs of an EventSource: the browser's and the `eventsource` package's both fit. */
export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  removeEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

export interface RequestOptions {
  /** Default "" (same origin); in Node an absolute URL such as "http://localhost:3000". */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer` on API calls and as `?access_token=` on streams. */
  accessToken?: string;
  /** Default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

export interface ConnectOptions extends RequestOptions {
  /** `GET /api/v1/stream?sessions=a,b`; may include "@sessions". Exactly one of sessions/subscription. */
  sessions?: string[];
  /** `GET /api/v1/stream?subscription=sid`: follows the server-side set; needed for add()/remove(). */
  subscription?: string;
  /** Default `globalThis.EventSource`. */
  EventSource?: EventSourceConstructor;
  /**
   * Resume from this cursor (sent as `?lastEventId=`): one kept from an earlier connection on the same
   * `sessions` list or subscription, e.g. by another tab or before `closed`. Every session then goes on
   * exactly after it. The EventSource's own reconnects send the newer `Last-Event-ID` header, which
   * the gateway prefers to the query parameter.
   */
  lastEventId?: string;
  /** Custom event types to listen for (delivered to `onEvent`), besides the built-in ones. */
  extraTypes?: string[];
  /** Default handlers for every session. */
  handlers?: SessionHandlers;
  lifecycle?: LifecycleHandlers;
  onState?(state: ConnectionState, info?: StateInfo): void;
  /** A handler threw, or an event's data was not JSON. Default: console.error. Listeners never throw. */
  onListenerError?(error: unknown): void;
}

export interface GatewayConnection {
  /** Adds handlers for one session; returns the function that removes them. */
  on(sessionId: string, handlers: SessionHandlers): () => void;
  /** PATCHes the subscription set; rejects on a `sessions=` connection (it cannot change). */
  add(sessionIds: string[]): Promise<void>;
  remove(sessionIds: string[]): Promise<void>;
  close(): void;
  readonly state: ConnectionState;
  readonly connectionId: string | undefined;
  /** The last cursor received: what the EventSource sends back as Last-Event-ID. */
  readonly lastEventId: string | undefined;
}

/** A non-2xx answer of the API: `code` and `message` come from its `{error: {code, message}}` body. */
export class GatewayError extends Error {
  override readonly name = "GatewayError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const LIFECYCLE_FEED = "@sessions";
const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;
const EVENT_TYPE = /^[a-z][a-z0-9_.-]{0,31}$/;
const SESSION_TYPES = [
  "start",
  "token",
  "reasoning",
  "refusal",
  "tool_call_delta",
  "tool_call",
  "usage",
  "done",
  "error",
  "cancelled",
  "snapshot",
  "gap",
  "unknown",
] as const;
const LIFECYCLE_TYPES = ["created", "ended"] as const;
// EventSource readyState values; not read from the constructor, which a polyfill may not expose.
const CONNECTING = 0;
const CLOSED = 2;

export function connect(options: ConnectOptions): GatewayConnection {
  const EventSourceImpl =
    options.EventSource ?? (globalThis.EventSource as EventSourceConstructor | undefined);
  if (!EventSourceImpl)
    throw new TypeError("no EventSource: pass options.EventSource (in Node, from 'eventsource')");
  const subscription = options.subscription;
  if ((options.sessions === undefined) === (subscription === undefined)) {
    throw new TypeError("connect() needs exactly one of `sessions` and `subscription`");
  }
  const initial = options.sessions ?? [];
  if (options.sessions && initial.length === 0) throw new TypeError("`sessions` is empty");
  for (const id of initial) if (id !== LIFECYCLE_FEED) assertSessionId(id);
  const types: string[] = [...SESSION_TYPES];
  for (const type of options.extraTypes ?? []) {
    if (!EVENT_TYPE.test(type)) throw new TypeError(`invalid event type ${JSON.stringify(type)}`);
    if (!types.includes(type)) types.push(type);
  }

  const perSession = new Map<string, Set<SessionHandlers>>();
  const registered = new Set<string>();
  const reportError =
    options.onListenerError ?? ((error: unknown) => console.error("gateway client:", error));
  let state: ConnectionState = "connecting";
  let connectionId: string | undefined;
  let lastEventId: string | undefined = options.lastEventId || undefined;
  let closed = false;

  const notify = (next: ConnectionState, info?: StateInfo): void => {
    try {
      options.onState?.(next, info);
    } catch (error) {
      reportError(error);
    }
  };
  const setState = (next: ConnectionState, info?: StateInfo): void => {
    if (next === state && next !== "live") return;
    state = next;
    notify(next, info);
  };

  const parse = (event: MessageEvent): { ok: true; data: unknown } | { ok: false } => {
    try {
      return { ok: true, data: JSON.parse(String(event.data)) };
    } catch (error) {
      reportError(new Error(`event ${event.type}: data is not JSON`, { cause: error }));
      return { ok: false };
    }
  };

  const call = (handlers: SessionHandlers, sessionId: string, type: string, data: unknown): void => {
    try {
      callTyped(handlers, sessionId, type, data);
    } catch (error) {
      reportError(error);
    }
    try {
      handlers.onEvent?.(type, data, sessionId);
    } catch (error) {
      reportError(error);
    }
  };

  // One listener for every `<sessionId>:<type>` name: neither part can contain ":".
  const onSessionEvent = (event: MessageEvent): void => {
    if (event.lastEventId) lastEventId = event.lastEventId;
    const colon = event.type.indexOf(":");
    const sessionId = event.type.slice(0, colon);
    const type = event.type.slice(colon + 1);
    const parsed = parse(event);
    if (!parsed.ok) return;
    if (sessionId === LIFECYCLE_FEED) {
      onLifecycle(type, parsed.data);
      return;
    }
    if (options.handlers) call(options.handlers, sessionId, type, parsed.data);
    const handlers = perSession.get(sessionId);
    if (handlers) for (const h of [...handlers]) call(h, sessionId, type, parsed.data);
  };

  const onLifecycle = (type: string, data: unknown): void => {
    if (!isRecord(data) || typeof data.id !== "string") return;
    // A subscription may gain this session at any time (someone PATCHes it): be ready for its events.
    if (type === "created" && subscription !== undefined && SESSION_ID.test(data.id)) register(data.id);
    try {
      if (type === "created") options.lifecycle?.onCreated?.(data as unknown as CreatedData);
      else if (type === "ended") options.lifecycle?.onEnded?.(data as unknown as EndedData);
    } catch (error) {
      reportError(error);
    }
  };

  const namesOf = (sessionId: string): string[] =>
    (sessionId === LIFECYCLE_FEED ? LIFECYCLE_TYPES : types).map((type) => `${sessionId}:${type}`);

  const register = (sessionId: string): void => {
    if (registered.has(sessionId)) return;
    registered.add(sessionId);
    for (const name of namesOf(sessionId)) source.addEventListener(name, onSessionEvent);
  };

  const unregister = (sessionId: string): void => {
    if (!registered.delete(sessionId)) return;
    for (const name of namesOf(sessionId)) source.removeEventListener(name, onSessionEvent);
  };

  const source = new EventSourceImpl(streamUrl(options));
  for (const id of initial) register(id);
  // Reported a microtask later, so that onState may already use the returned connection.
  queueMicrotask(() => {
    if (state === "connecting" && !closed) notify("connecting");
  });

  source.addEventListener("connected", (event) => {
    const parsed = parse(event);
    if (!parsed.ok || !isRecord(parsed.data)) return;
    const { data } = parsed;
    if (typeof data.connectionId === "string") connectionId = data.connectionId;
    for (const id of idList(data.sessions)) register(id);
    const info: StateInfo = { resumed: lastEventId !== undefined };
    if (connectionId !== undefined) info.connectionId = connectionId;
    setState("live", info);
  });

  source.addEventListener("subscribed", (event) => {
    const parsed = parse(event);
    if (!parsed.ok || !isRecord(parsed.data)) return;
    for (const id of idList(parsed.data.add)) register(id);
    for (const id of idList(parsed.data.remove)) unregister(id);
  });

  source.addEventListener("error", (event) => {
    if (closed) return;
    if (source.readyState === CLOSED) {
      closed = true;
      const status = (event as { code?: unknown }).code;
      setState("closed", typeof status === "number" ? { status } : undefined);
    } else if (source.readyState === CONNECTING) {
      setState("reconnecting");
    }
  });

  const patch = async (body: { add?: string[]; remove?: string[] }): Promise<void> => {
    if (subscription === undefined) {
      throw new Error(
        "add()/remove() need a subscription connection: create one with createSubscription() " +
          "and connect({ subscription }); a `sessions=` connection cannot change",
      );
    }
    await request("PATCH", `/api/v1/subscriptions/${encodeURIComponent(subscription)}`, body, options);
  };

  return {
    on(sessionId, handlers) {
      assertSessionId(sessionId);
      const set = perSession.get(sessionId) ?? new Set<SessionHandlers>();
      perSession.set(sessionId, set);
      set.add(handlers);
      if (!closed) register(sessionId);
      return () => {
        set.delete(handlers);
        if (set.size === 0 && perSession.get(sessionId) === set) perSession.delete(sessionId);
      };
    },
    async add(sessionIds) {
      for (const id of sessionIds) if (id !== LIFECYCLE_FEED) assertSessionId(id);
      if (sessionIds.length === 0) return;
      await patch({ add: sessionIds });
      if (!closed) for (const id of sessionIds) register(id);
    },
    async remove(sessionIds) {
      if (sessionIds.length === 0) return;
      await patch({ remove: sessionIds });
      for (const id of sessionIds) unregister(id);
    },
    close() {
      if (closed) return;
      closed = true;
      source.close();
      setState("closed");
    },
    get state() {
      return state;
    },
    get connectionId() {
      return connectionId;
    },
    get lastEventId() {
      return lastEventId;
    },
  };
}

/** `POST /api/v1/subscriptions`: a server-side set to pass to `connect({ subscription })`. */
export async function createSubscription(sessions: string[], options: RequestOptions = {}): Promise<string> {
  const body = await request<{ id: string }>("POST", "/api/v1/subscriptions", { sessions }, options);
  return body.id;
}

/** A content part, as Chat Completions takes it (user messages take all four; others only text). */
export type ContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } }
  | { type: "input_audio"; input_audio: { data: string; format: "wav" | "mp3" } }
  | { type: "file"; file: { file_data?: string; file_id?: string; filename?: string } };
export type TextPart = { type: "text"; text: string };
/** A message, as Chat Completions takes it (every role but the deprecated `function`). */
export type ChatMessage =
  | { role: "system" | "developer"; content: string | TextPart[]; name?: string }
  | { role: "user"; content: string | ContentPart[]; name?: string }
  | {
      role: "assistant";
      content?: string | Array<TextPart | { type: "refusal"; refusal: string }> | null;
      refusal?: string | null;
      tool_calls?: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }>;
      name?: string;
    }
  | { role: "tool"; content: string | TextPart[]; tool_call_id: string };
export interface FunctionTool {
  type: "function";
  function: {
    name: string;
    description?: string;
    parameters?: Record<string, unknown>;
    strict?: boolean | null;
  };
}

/** Give `message` or `messages`; every other field is passed to the model as given. */
export interface StartSessionBody {
  message?: string;
  messages?: ChatMessage[];
  model?: string;
  instructions?: string;
  id?: string;
  metadata?: Record<string, unknown>;
  tools?: FunctionTool[];
  tool_choice?:
    | "none"
    | "auto"
    | "required"
    | { type: "function"; function: { name: string } }
    | {
        type: "allowed_tools";
        allowed_tools: { mode: "auto" | "required"; tools: Array<Record<string, unknown>> };
      };
  parallel_tool_calls?: boolean;
  temperature?: number | null;
  top_p?: number | null;
  max_completion_tokens?: number | null;
  response_format?:
    | { type: "text" }
    | { type: "json_object" }
    | {
        type: "json_schema";
        json_schema: {
          name: string;
          description?: string;
          schema?: Record<string, unknown>;
          strict?: boolean | null;
        };
      };
  reasoning_effort?: "none" | "minimal" | "low" | "medium" | "high" | "xhigh" | "max" | null;
  seed?: number | null;
  stop?: string | string[] | null;
}
export interface SessionRef {
  id: string;
  status: string;
  streamUrl: string;
}

/** `POST /api/v1/sessions`: starts a run; its events then stream on any connection that has it. */
export function startSession(body: StartSessionBody, options: RequestOptions = {}): Promise<SessionRef> {
  return request<SessionRef>("POST", "/api/v1/sessions", body, options);
}

/** `POST /api/v1/sessions/:id/cancel`: the session ends with `cancelled`. */
export function cancelSession(
  id: string,
  options: RequestOptions = {},
): Promise<{ id: string; status: string }> {
  return request("POST", `/api/v1/sessions/${encodeURIComponent(id)}/cancel`, undefined, options);
}

function callTyped(h: SessionHandlers, sessionId: string, type: string, data: unknown): void {
  switch (type) {
    case "start":
      h.onStart?.(data as StartData, sessionId);
      return;
    case "token": {
      const content = isRecord(data) ? data.content : undefined;
      if (typeof content === "string") h.onToken?.(content, sessionId);
      return;
    }
    case "reasoning":
    case "refusal": {
      const content = isRecord(data) ? data.content : undefined;
      if (typeof content !== "string") return;
      if (type === "reasoning") h.onReasoning?.(content, sessionId);
      else h.onRefusal?.(content, sessionId);
      return;
    }
    case "tool_call_delta":
      h.onToolCallDelta?.(data as ToolCallDeltaData, sessionId);
      return;
    case "tool_call":
      h.onToolCall?.(data as ToolCallData, sessionId);
      return;
    case "usage":
      h.onUsage?.(data as UsageData, sessionId);
      return;
    case "done":
      h.onDone?.(data as DoneData, sessionId);
      return;
    case "error":
      h.onError?.(data as ErrorData, sessionId);
      return;
    case "cancelled":
      h.onCancelled?.(data as CancelledData, sessionId);
      return;
    case "snapshot":
      h.onSnapshot?.(data as SnapshotData, sessionId);
      return;
    case "gap":
      h.onGap?.(data as GapData, sessionId);
      return;
    case "unknown":
      h.onUnknown?.(sessionId);
      return;
  }
}

function streamUrl(options: ConnectOptions): string {
  const params =
    options.subscription !== undefined
      ? `subscription=${encodeURIComponent(options.subscription)}`
      : `sessions=${(options.sessions ?? []).map(encodeURIComponent).join(",")}`;
  const cursor = options.lastEventId ? `&lastEventId=${encodeURIComponent(options.lastEventId)}` : "";
  const token = options.accessToken ? `&access_token=${encodeURIComponent(options.accessToken)}` : "";
  return `${options.baseUrl ?? ""}/api/v1/stream?${params}${cursor}${token}`;
}

async function request<T>(method: string, path: string, body: unknown, options: RequestOptions): Promise<T> {
  const doFetch =
    options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (options.accessToken) headers.authorization = `Bearer ${options.accessToken}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await doFetch(`${options.baseUrl ?? ""}${path}`, init);
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const error = isRecord(json) && isRecord(json.error) ? json.error : {};
    throw new GatewayError(
      response.status,
      typeof error.code === "string" ? error.code : `http_${response.status}`,
      typeof error.message === "string" ? error.message : `${method} ${path}: HTTP ${response.status}`,
    );
  }
  return json as T;
}

function assertSessionId(id: string): void {
  if (!SESSION_ID.test(id)) throw new TypeError(`invalid session id ${JSON.stringify(id)}`);
}

/** Session ids from `connected.sessions` or `subscribed.add/remove`: strings, or `{id}` objects. */
function idList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  const ids: string[] = [];
  for (const item of value) {
    const id = isRecord(item) ? item.id : item;
    if (typeof id === "string" && (id === LIFECYCLE_FEED || SESSION_ID.test(id))) ids.push(id);
  }
  return ids;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
