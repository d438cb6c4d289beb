// @ts-check
/**
 * The dashboard's state as plain data: the same in every tab. The tab that holds the connection
 * turns each received event into a message, applies it here and broadcasts it; the other tabs apply
 * the same messages in the same order, so every tab shows the same panels.
 *
 * Messages:
 *   {t:"ev", s, type, data, cursor, at, rp}   a session event (`rp`: received in a catch-up burst,
 *                                              "history" on a first connection, "resume" after a drop)
 *   {t:"life", type:"created"|"ended", data, cursor, at, rp}   the `@sessions` feed
 *   {t:"follow", ids, at}   the leader added these sessions to the subscription set: show panels
 *   {t:"drop", ids}         the leader removed these (old finished) sessions
 *   {t:"reset", subscription}   a connection starts from the beginning: forget everything
 * `at` is the leader's Date.now() when the event arrived, so every tab shows the same timings.
 */

/** @typedef {"running"|"done"|"error"|"cancelled"|"interrupted"|"unknown"} Status */

/**
 * @typedef {object} Session
 * @property {string} id
 * @property {string} model
 * @property {string | null} createdAt  the server's ISO time of creation
 * @property {Status} status
 * @property {string} text
 * @property {string} reasoning  reasoning text, shown apart from the answer
 * @property {string} refusal  refusal text: the model declined
 * @property {ToolCall[]} toolCalls  in order of `index`
 * @property {number} tokenEvents
 * @property {number | null} completionTokens  from `usage`, when the upstream reports it
 * @property {number | null} totalTokens  from `done`
 * @property {number | null} createdSeenAt  when `@sessions:created` arrived live (not replayed): the
 *   page then watched the whole run, so its time to first token and tokens per second mean something
 * @property {number | null} firstOutputAt  the first output of any kind (token, reasoning, refusal, tool call)
 * @property {number | null} firstTokenAt
 * @property {number | null} lastTokenAt
 * @property {number | null} endedAt  when the terminal event arrived
 * @property {string | null} finishReason
 * @property {string | null} errorCode
 * @property {string | null} errorMessage
 * @property {string | null} cancelReason
 * @property {number} gaps  `gap` notes received: part of the history was trimmed
 */

/**
 * @typedef {object} ToolCall  a call as it streams (`tool_call_delta`), complete once `tool_call` came
 * @property {number} index
 * @property {string | null} id
 * @property {string} name
 * @property {string} arguments  the JSON text so far
 * @property {boolean} complete
 */

/**
 * @typedef {object} Known  what the `@sessions` feed said about a session
 * @property {string} model
 * @property {string | null} createdAt
 * @property {number | null} seenAt
 * @property {string | null} ended  the `ended` status, or null while running
 */

/**
 * @typedef {object} Change  what one message changed, for the view
 * @property {string[]} ids  sessions whose panel changed
 * @property {string[]} added  new panels
 * @property {string[]} dropped  removed panels
 * @property {Array<{id: string, status: Status}>} ended  panels that reached a final status (not in a
 *   replay of history: worth announcing)
 * @property {boolean} statusChanged  some panel's status changed
 * @property {string | null} appendedTo  a token's session
 * @property {string} appended  its text
 * @property {boolean} reset
 */

export const FINAL = new Set(["done", "error", "cancelled", "interrupted", "unknown"]);
const SEEN_CURSORS = 4096;
const STALE_CREATED_MS = 60_000;

/** @returns {Change} */
function emptyChange() {
  return {
    ids: [],
    added: [],
    dropped: [],
    ended: [],
    statusChanged: false,
    appendedTo: null,
    appended: "",
    reset: false,
  };
}

/**
 * @param {string} id
 * @returns {Session}
 */
function newSession(id) {
  return {
    id,
    model: "",
    createdAt: null,
    status: "running",
    text: "",
    reasoning: "",
    refusal: "",
    toolCalls: [],
    tokenEvents: 0,
    completionTokens: null,
    totalTokens: null,
    createdSeenAt: null,
    firstOutputAt: null,
    firstTokenAt: null,
    lastTokenAt: null,
    endedAt: null,
    finishReason: null,
    errorCode: null,
    errorMessage: null,
    cancelReason: null,
    gaps: 0,
  };
}

/** @param {unknown} value @returns {Record<string, unknown>} */
function record(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? /** @type {Record<string, unknown>} */ (value)
    : {};
}

/** @param {unknown} value @returns {string | null} */
function text(value) {
  return typeof value === "string" ? value : null;
}

/** @param {unknown} value @returns {number | null} */
function num(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * The session's call with this index, created (in index order) when new.
 * @param {Session} session @param {number} index @returns {ToolCall}
 */
function toolCallAt(session, index) {
  let call = session.toolCalls.find((candidate) => candidate.index === index);
  if (!call) {
    call = { index, id: null, name: "", arguments: "", complete: false };
    session.toolCalls.push(call);
    session.toolCalls.sort((a, b) => a.index - b.index);
  }
  return call;
}

export class Model {
  constructor() {
    /** @type {Map<string, Session>} sessions with a panel, in the order they appeared */
    this.sessions = new Map();
    /** @type {Map<string, Known>} */
    this.known = new Map();
    /** @type {string | undefined} the last cursor: where a new connection resumes */
    this.cursor = undefined;
    /** @type {string | undefined} */
    this.subscription = undefined;
    /** @type {Set<string>} recent cursors: an event delivered twice (a tab takeover race) is applied once */
    this.seen = new Set();
  }

  /**
   * @param {any} msg
   * @returns {Change | null} null when the message changed nothing
   */
  apply(msg) {
    if (msg.cursor) {
      if (this.seen.has(msg.cursor)) return null;
      this.seen.add(msg.cursor);
      if (this.seen.size > SEEN_CURSORS) {
        const oldest = this.seen.values().next().value;
        if (oldest !== undefined) this.seen.delete(oldest);
      }
      this.cursor = msg.cursor;
    }
    const change = emptyChange();
    switch (msg.t) {
      case "ev":
        this.applyEvent(msg, change);
        return change;
      case "life":
        this.applyLifecycle(msg, change);
        return change;
      case "follow":
        for (const id of msg.ids) this.ensure(id, change);
        return change;
      case "drop":
        for (const id of msg.ids) {
          if (this.sessions.delete(id)) change.dropped.push(id);
          this.known.delete(id);
        }
        return change;
      case "reset":
        this.sessions.clear();
        this.known.clear();
        this.seen.clear();
        this.cursor = undefined;
        if (msg.subscription) this.subscription = msg.subscription;
        change.reset = true;
        return change;
      default:
        return null;
    }
  }

  /** @param {string} id @param {Change} change @returns {Session} */
  ensure(id, change) {
    let session = this.sessions.get(id);
    if (!session) {
      session = newSession(id);
      const known = this.known.get(id);
      if (known) {
        session.model = known.model;
        session.createdAt = known.createdAt;
        session.createdSeenAt = known.seenAt;
      }
      this.sessions.set(id, session);
      change.added.push(id);
      change.ids.push(id);
    }
    return session;
  }

  /** @param {any} msg @param {Change} change */
  applyEvent(msg, change) {
    const session = this.ensure(msg.s, change);
    if (!change.ids.includes(session.id)) change.ids.push(session.id);
    const data = record(msg.data);
    const wasFinal = FINAL.has(session.status);
    const before = session.status;
    switch (msg.type) {
      case "start":
        session.model = text(data.model) ?? session.model;
        session.createdAt = text(data.createdAt) ?? session.createdAt;
        break;
      case "token": {
        const content = text(data.content) ?? "";
        session.text += content;
        session.tokenEvents += 1;
        session.firstTokenAt ??= msg.at;
        session.firstOutputAt ??= msg.at;
        session.lastTokenAt = msg.at;
        change.appendedTo = session.id;
        change.appended = content;
        break;
      }
      case "reasoning":
        session.reasoning += text(data.content) ?? "";
        session.firstOutputAt ??= msg.at;
        break;
      case "refusal":
        session.refusal += text(data.content) ?? "";
        session.firstOutputAt ??= msg.at;
        break;
      case "tool_call_delta":
      case "tool_call": {
        const index = num(data.index);
        if (index === null) return;
        const call = toolCallAt(session, index);
        call.id = text(data.id) ?? call.id;
        call.name = text(data.name) ?? call.name;
        const args = text(data.arguments) ?? "";
        // A `tool_call` carries the whole arguments: it replaces what the deltas made.
        call.arguments = msg.type === "tool_call" ? args : call.arguments + args;
        if (msg.type === "tool_call") call.complete = true;
        session.firstOutputAt ??= msg.at;
        break;
      }
      case "snapshot": {
        // The session so far, folded by compaction: it replaces what this page had of it.
        session.text = text(data.content) ?? "";
        session.reasoning = text(data.reasoning) ?? "";
        session.refusal = text(data.refusal) ?? "";
        session.toolCalls = [];
        // Calls complete in index order: the first `folded.tool_call` of them are complete.
        const completed = num(record(data.folded).tool_call) ?? 0;
        for (const folded of Array.isArray(data.tool_calls) ? data.tool_calls : []) {
          const item = record(folded);
          const index = num(item.index);
          if (index === null) continue;
          const call = toolCallAt(session, index);
          call.id = text(item.id);
          call.name = text(item.name) ?? "";
          call.arguments = text(item.arguments) ?? "";
        }
        session.toolCalls.forEach((call, position) => {
          call.complete = position < completed;
        });
        session.tokenEvents = num(record(data.folded).token) ?? 0;
        session.completionTokens = num(record(data.usage).completion_tokens) ?? session.completionTokens;
        break;
      }
      case "usage":
        session.completionTokens = num(data.completion_tokens);
        break;
      case "done":
        session.status = "done";
        session.totalTokens = num(data.total_tokens);
        session.finishReason = text(data.finish_reason);
        break;
      case "error":
        session.errorCode = text(data.code);
        session.errorMessage = text(data.message);
        session.status = session.errorCode === "interrupted" ? "interrupted" : "error";
        break;
      case "cancelled":
        session.status = "cancelled";
        session.cancelReason = text(data.reason);
        break;
      case "gap":
        session.gaps += 1;
        break;
      case "unknown":
        if (session.tokenEvents === 0 && session.status === "running") session.status = "unknown";
        break;
      default:
        return;
    }
    if (!wasFinal && FINAL.has(session.status)) {
      session.endedAt = msg.at;
      if (msg.rp !== "history") change.ended.push({ id: session.id, status: session.status });
    } else if (session.status === "unknown" && msg.type !== "unknown") {
      // A producer created it after all: it streams like any other.
      session.status = "running";
      session.endedAt = null;
    }
    if (session.status !== before) change.statusChanged = true;
  }

  /** @param {any} msg @param {Change} change */
  applyLifecycle(msg, change) {
    const data = record(msg.data);
    const id = text(data.id);
    if (id === null) return;
    if (msg.type === "created") {
      const createdAt = text(data.createdAt);
      // Replayed history (the burst after connecting, or anything a minute old) is no start to time from.
      const age = createdAt ? msg.at - Date.parse(createdAt) : 0;
      const live = !msg.rp && !(age > STALE_CREATED_MS);
      const known = { model: text(data.model) ?? "", createdAt, seenAt: live ? msg.at : null, ended: null };
      this.known.set(id, known);
      const session = this.sessions.get(id);
      if (session) {
        session.model ||= known.model;
        session.createdAt ??= known.createdAt;
        session.createdSeenAt ??= known.seenAt;
        change.ids.push(id);
      }
    } else if (msg.type === "ended") {
      const known = this.known.get(id);
      if (known) known.ended = text(data.status) ?? "done";
      else
        this.known.set(id, { model: "", createdAt: null, seenAt: null, ended: text(data.status) ?? "done" });
    }
  }

  /** Everything a tab that opens later needs; `known` only for sessions still running. */
  snapshot() {
    return {
      sessions: [...this.sessions.values()],
      known: [...this.known].filter(([, known]) => known.ended === null),
      cursor: this.cursor,
      subscription: this.subscription,
      seen: [...this.seen].slice(-256),
    };
  }

  /** @param {ReturnType<Model["snapshot"]>} snapshot */
  load(snapshot) {
    this.sessions = new Map(snapshot.sessions.map((session) => [session.id, session]));
    this.known = new Map(snapshot.known);
    this.cursor = snapshot.cursor;
    this.subscription = snapshot.subscription;
    this.seen = new Set(snapshot.seen);
  }

  /** Sessions the `@sessions` feed announced that are still running and have no panel yet. */
  runningUnfollowed() {
    return [...this.known]
      .filter(([id, known]) => known.ended === null && !this.sessions.has(id))
      .map(([id]) => id);
  }

  /** Finished panels, newest first. */
  finished() {
    return [...this.sessions.values()]
      .filter((session) => FINAL.has(session.status))
      .sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0) || compareCreated(b, a));
  }

  /** @param {string} status @returns {number} */
  count(status) {
    if (status === "all") return this.sessions.size;
    let n = 0;
    for (const session of this.sessions.values()) if (session.status === status) n += 1;
    return n;
  }
}

/** @param {{createdAt: string | null}} a @param {{createdAt: string | null}} b */
export function compareCreated(a, b) {
  return (a.createdAt ?? "").localeCompare(b.createdAt ?? "");
}

/** Tokens to show: the upstream's count when it reported one, else the token events. */
/** @param {Session} session */
export function tokenCount(session) {
  return session.completionTokens ?? session.tokenEvents;
}

/**
 * Tokens per second over the stream so far (after the first token); null when unknown: fewer than two
 * tokens, or a run this page did not watch from its creation (replayed tokens arrive in a burst, and
 * their arrival times say nothing about the run).
 * @param {Session} session
 */
export function tokensPerSecond(session) {
  if (session.createdSeenAt === null || session.firstTokenAt === null || session.lastTokenAt === null)
    return null;
  const seconds = (session.lastTokenAt - session.firstTokenAt) / 1000;
  if (session.tokenEvents < 2 || seconds <= 0) return null;
  return (session.tokenEvents - 1) / seconds;
}

/**
 * Time to first token: from the live `@sessions:created` to the model's first output of any kind (a
 * token, reasoning, a refusal or a tool call, as the gateway's metric counts it), both as the page saw them.
 * @param {Session} session
 */
export function timeToFirstToken(session) {
  if (session.createdSeenAt === null || session.firstOutputAt === null) return null;
  return Math.max(0, session.firstOutputAt - session.createdSeenAt);
}
