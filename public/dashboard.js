// @ts-check
/**
 * The live dashboard: one panel per agent session, all on ONE EventSource.
 *
 * The page follows the `@sessions` lifecycle feed through a server-side subscription set, and adds each
 * new session to that set (PATCH), so its events arrive on the same connection. With several tabs
 * open, one tab (the leader, see tab-leader.js) holds the connection and re-broadcasts every event;
 * the others render from the broadcast. When the leader closes, the next tab resumes the same
 * subscription from the last cursor it saw (`?lastEventId=`): nothing missed, nothing twice.
 */
import {
  cancelSession,
  connect,
  createSubscription,
  GatewayError,
  LIFECYCLE_FEED,
  startSession,
} from "/client.js";
import { describeAuthError, getToken, requestOptions, setToken } from "./auth.js";
import { FINAL, Model } from "./model.js";
import { Announcer, PanelView } from "./panels.js";
import { electLeader, openChannel } from "./tab-leader.js";

const CHANNEL_NAME = "sse-gateway";
const LOCK_NAME = "sse-gateway-leader";
const SUBSCRIPTION_KEY = "sse-gateway.subscription";
const SETTINGS_KEY = "sse-gateway.settings";
const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** After `connected`, events are a catch-up burst until the stream is quiet this long… */
const CATCH_UP_QUIET_MS = 150;
/** …or this long has passed (a busy stream is never quiet). */
const CATCH_UP_MAX_MS = 600;
/** A tab that takes over waits this long for the old leader's last broadcasts before resuming. */
const TAKEOVER_DRAIN_MS = 300;
/** New sessions are added to the set in batches: when the feed is quiet this long, or at the latest… */
const FOLLOW_QUIET_MS = 100;
/** …this long after the first one arrived. */
const FOLLOW_MAX_WAIT_MS = 300;
const PATCH_BATCH = 500;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15_000;
const FILTERS = ["all", "running", "done", "error", "cancelled", "interrupted"];

/** @template {HTMLElement} T @param {string} id @returns {T} */
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: #${id} is missing`);
  return /** @type {T} */ (el);
}

const ui = {
  connection: byId("connection"),
  connectionText: byId("connection-text"),
  tabRole: byId("tab-role"),
  auth: byId("auth"),
  authForm: /** @type {HTMLFormElement} */ (byId("auth-form")),
  authMessage: byId("auth-message"),
  token: /** @type {HTMLInputElement} */ (byId("token")),
  forgetToken: /** @type {HTMLButtonElement} */ (byId("forget-token")),
  startForm: /** @type {HTMLFormElement} */ (byId("start-form")),
  message: /** @type {HTMLTextAreaElement} */ (byId("message")),
  model: /** @type {HTMLInputElement} */ (byId("model")),
  instructions: /** @type {HTMLInputElement} */ (byId("instructions")),
  startButton: /** @type {HTMLButtonElement} */ (byId("start-button")),
  startStatus: byId("start-status"),
  filter: /** @type {HTMLSelectElement} */ (byId("filter")),
  views: byId("views"),
  filterEmpty: byId("filter-empty"),
  collapseAfter: /** @type {HTMLInputElement} */ (byId("collapse-after")),
  keepFinished: /** @type {HTMLInputElement} */ (byId("keep-finished")),
};

// ---------------------------------------------------------------- settings

/** @typedef {{collapseAfterSeconds: number, keepFinished: number}} Settings */
/** @type {Settings} */
const DEFAULT_SETTINGS = { collapseAfterSeconds: 30, keepFinished: 50 };

/** @returns {Settings} */
function loadSettings() {
  /** @type {Settings} */
  const settings = { ...DEFAULT_SETTINGS };
  try {
    Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}"));
  } catch {
    // defaults
  }
  // `?collapseAfter=5` in the address overrides the saved value for this page.
  const fromUrl = Number(new URLSearchParams(location.search).get("collapseAfter"));
  if (new URLSearchParams(location.search).has("collapseAfter") && Number.isFinite(fromUrl)) {
    settings.collapseAfterSeconds = fromUrl;
  }
  settings.collapseAfterSeconds = clamp(settings.collapseAfterSeconds, 0, 86_400, 30);
  settings.keepFinished = clamp(settings.keepFinished, 1, 1000, 50);
  return settings;
}

/** @param {unknown} value @param {number} min @param {number} max @param {number} fallback */
function clamp(value, min, max, fallback) {
  const n = Number(value);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, Math.round(n))) : fallback;
}

const settings = loadSettings();

function applySettings() {
  ui.collapseAfter.value = String(settings.collapseAfterSeconds);
  ui.keepFinished.value = String(settings.keepFinished);
  view.collapseAfterMs = settings.collapseAfterSeconds * 1000;
}

function saveSettings() {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  } catch {
    // not saved
  }
}

// ---------------------------------------------------------------- state and rendering

const tabId = typeof crypto.randomUUID === "function" ? crypto.randomUUID() : String(Math.random()).slice(2);
const model = new Model();
const announcer = new Announcer(byId("announcer"));
const view = new PanelView(
  {
    grid: byId("panels"),
    finished: byId("finished"),
    finishedSection: byId("finished-section"),
    empty: byId("empty"),
  },
  { onCancel: cancel },
);
applySettings();

/** "starting" → "follower" (renders from the channel) | "taking-over" → "leader" (holds the connection) | "solo" */
let role = "starting";
/** A follower has the leader's snapshot (or this tab leads). */
let synced = false;
/** The token form shows because the leader's connection needs a token. */
let authFromLeader = false;
/**
 * @typedef {object} ConnectionInfo
 * @property {string} state  connecting | live | reconnecting | offline | auth
 * @property {boolean} [resumed]
 * @property {number | null} [recovered]
 * @property {number} [retryInMs]
 * @property {string} [message]
 * @property {{kind: string, message: string}} [auth]  on "auth": what to ask the user
 */
/** @type {ConnectionInfo} */
let connectionInfo = { state: "connecting" };

/** Applies a message to the model and the panels. @param {any} msg */
function receive(msg) {
  const change = model.apply(msg);
  if (!change) return;
  view.render(change, model);
  if (msg.t === "reset" && msg.subscription) storeSubscription(msg.subscription);
  for (const { id, status } of change.ended) {
    const session = model.sessions.get(id);
    const tokens = session ? ` after ${session.completionTokens ?? session.tokenEvents} tokens` : "";
    announcer.say(
      `Session ${id} ${status === "unknown" ? "not found" : status}${status === "done" ? tokens : ""}`,
    );
  }
  if (msg.t === "follow" && change.added.length > 0) {
    announcer.say(
      change.added.length === 1 ? `New session ${change.added[0]}` : `${change.added.length} new sessions`,
    );
  }
  if (msg.t === "ev" && msg.type === "gap") showConnection(connectionInfo);
  if (change.added.length > 0 || change.dropped.length > 0 || change.statusChanged || change.reset)
    scheduleCounts();
  if (change.statusChanged && leading()) schedulePrune();
}

/** Whether this tab holds the connection. */
function leading() {
  return role === "leader" || role === "solo";
}

/** The leader: apply, and tell the other tabs. @param {any} msg */
function dispatch(msg) {
  if (role === "leader") channel.post(msg);
  receive(msg);
}

/** @type {ReturnType<typeof setTimeout> | null} */
let countsTimer = null;
function scheduleCounts() {
  countsTimer ??= setTimeout(updateCounts, 200);
}

function updateCounts() {
  countsTimer = null;
  for (const option of ui.filter.options) {
    const label = option.value === "all" ? "All" : option.value[0].toUpperCase() + option.value.slice(1);
    option.textContent = `${label} (${model.count(option.value)})`;
  }
  const filter = ui.filter.value;
  const none = model.sessions.size > 0 && filter !== "all" && model.count(filter) === 0;
  ui.filterEmpty.hidden = !none;
  if (none) ui.filterEmpty.textContent = `No ${filter} sessions right now.`;
}

/** @param {ConnectionInfo} info */
function showConnection(info) {
  connectionInfo = info;
  let text;
  switch (info.state) {
    case "live":
      if (info.recovered !== undefined && info.recovered !== null) {
        text = `Live · resumed, ${info.recovered} missed event${info.recovered === 1 ? "" : "s"} recovered`;
      } else if (info.resumed) {
        text = "Live · resuming…";
      } else {
        text = "Live";
      }
      break;
    case "reconnecting":
      text = "Reconnecting…";
      break;
    case "offline":
      text = `Offline · retrying in ${Math.ceil((info.retryInMs ?? 0) / 1000)} s`;
      break;
    case "auth":
      text = info.message ?? "Waiting for an access token";
      break;
    default:
      text = "Connecting…";
  }
  let gaps = 0;
  for (const session of model.sessions.values()) if (session.gaps > 0) gaps += 1;
  if (gaps > 0) text += ` · gap in ${gaps} session${gaps === 1 ? "" : "s"} (history trimmed)`;
  ui.connection.dataset.state = info.state;
  ui.connection.dataset.gap = String(gaps);
  if (info.recovered !== undefined && info.recovered !== null)
    ui.connection.dataset.recovered = String(info.recovered);
  else delete ui.connection.dataset.recovered;
  if (ui.connectionText.textContent !== text) ui.connectionText.textContent = text;
  if (role === "leader") channel.post({ t: "conn", info });
}

function showRole() {
  const labels = /** @type {Record<string, string>} */ ({
    leader: "This tab holds the connection for all dashboard tabs",
    "taking-over": "Taking over the connection…",
    follower: "Shared: another dashboard tab holds the connection",
    solo: "This tab holds its own connection",
    starting: "",
  });
  ui.tabRole.dataset.role = role;
  ui.tabRole.textContent = labels[role] ?? "";
}

// ---------------------------------------------------------------- tabs

const channel = openChannel(CHANNEL_NAME, onChannelMessage);

/** @param {any} msg */
function onChannelMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  switch (msg.t) {
    case "hello":
      if (role === "leader") {
        channel.post({
          t: "snapshot",
          to: msg.from,
          state: model.snapshot(),
          info: connectionInfo,
          token: getToken(),
        });
      }
      return;
    case "leader":
      if (!synced && role === "follower") channel.post({ t: "hello", from: tabId });
      return;
    case "snapshot":
      if (msg.to !== tabId || synced || role !== "follower") return;
      model.load(msg.state);
      view.rebuild(model);
      synced = true;
      if (msg.token && !getToken()) setToken(msg.token);
      if (model.subscription) storeSubscription(model.subscription);
      updateForgetToken();
      scheduleCounts();
      followConnection(msg.info);
      return;
    case "conn":
      if (role === "follower" || role === "taking-over") followConnection(msg.info);
      return;
    case "token":
      setToken(msg.token);
      updateForgetToken();
      hideAuth();
      if (leading() && authBlocked) {
        authBlocked = false;
        void openConnection();
      }
      return;
    case "ev":
    case "life":
    case "follow":
    case "drop":
    case "reset":
      if ((role === "follower" && synced) || role === "taking-over") receive(msg);
      return;
  }
}

/** The leader's connection state, in a follower: it asks for the token here too when the leader needs one. */
/** @param {ConnectionInfo} info */
function followConnection(info) {
  showConnection(info);
  if (info.state === "auth" && info.auth) {
    authFromLeader = true;
    showAuth(info.auth);
  } else if (info.state === "live" && authFromLeader) {
    authFromLeader = false;
    hideAuth();
  }
}

function becomeLeader() {
  if (role === "leader" || role === "solo") return;
  if (!sharing) {
    role = "solo";
    synced = true;
    showRole();
    void openConnection();
    return;
  }
  const tookOver = synced;
  role = "taking-over";
  showRole();
  // The old leader's last broadcasts may still be queued: apply them before resuming from the cursor.
  setTimeout(
    () => {
      role = "leader";
      synced = true;
      showRole();
      channel.post({ t: "leader", from: tabId });
      void openConnection();
    },
    tookOver ? TAKEOVER_DRAIN_MS : 0,
  );
}

// ---------------------------------------------------------------- the connection (leader only)

/** @type {import("/client.js").GatewayConnection | null} */
let connection = null;
let opening = false;
let authBlocked = false;
let retryDelay = RETRY_MIN_MS;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let retryTimer;
/** @type {Set<string>} members of the subscription set, as far as this tab knows */
let inSet = new Set();

/** @returns {string | null} */
function storedSubscription() {
  try {
    return sessionStorage.getItem(SUBSCRIPTION_KEY);
  } catch {
    return null;
  }
}

/** @param {string | null} sid */
function storeSubscription(sid) {
  try {
    if (sid) sessionStorage.setItem(SUBSCRIPTION_KEY, sid);
    else sessionStorage.removeItem(SUBSCRIPTION_KEY);
  } catch {
    // not kept
  }
}

/**
 * `GET /api/v1/subscriptions/:sid`: the set's members, or null when it is gone.
 * @param {string} sid
 * @returns {Promise<string[] | null>}
 */
async function getSubscription(sid) {
  const token = getToken();
  /** @type {Record<string, string>} */
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`/api/v1/subscriptions/${encodeURIComponent(sid)}`, { headers });
  const body = await response.json().catch(() => null);
  if (response.status === 404) return null;
  if (!response.ok) {
    const error = body?.error ?? {};
    throw new GatewayError(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? `HTTP ${response.status}`,
    );
  }
  return Array.isArray(body?.sessions) ? body.sessions : [];
}

/** Creates or re-uses the subscription set, and opens the EventSource on it. */
async function openConnection() {
  if (opening || connection) return;
  opening = true;
  clearTimeout(retryTimer);
  showConnection({ state: "connecting" });
  try {
    let sid = model.subscription ?? storedSubscription() ?? undefined;
    /** @type {string[] | null} */
    let members = null;
    if (sid) {
      members = await getSubscription(sid).catch((/** @type {unknown} */ error) => {
        // A set of another token's subject: start a new one.
        if (error instanceof GatewayError && error.status === 403) return null;
        throw error;
      });
      if (!members) sid = undefined;
    }
    if (!sid) {
      sid = await createSubscription([LIFECYCLE_FEED], requestOptions());
      members = [LIFECYCLE_FEED];
    }
    inSet = new Set(members);
    // Without a cursor on this set, the connection replays every session from its beginning.
    if (model.subscription !== sid || !model.cursor) dispatch({ t: "reset", subscription: sid });
    storeSubscription(sid);
    startStream(sid);
    // Sessions a previous leader announced but had not added yet, and running panels missing from the set.
    const missing = new Set(model.runningUnfollowed());
    for (const session of model.sessions.values()) {
      if (!FINAL.has(session.status) && !inSet.has(session.id)) missing.add(session.id);
    }
    for (const id of missing) noteCreated(id, true);
  } catch (error) {
    failed(error);
  } finally {
    opening = false;
  }
}

/** @param {string} sid */
function startStream(sid) {
  const lastEventId = model.cursor;
  /** @type {import("/client.js").GatewayConnection} */
  const c = connect({
    subscription: sid,
    ...requestOptions(),
    ...(lastEventId ? { lastEventId } : {}),
    handlers: {
      onEvent: (type, data, sessionId) => onStreamEvent(c, { t: "ev", s: sessionId, type, data }),
    },
    lifecycle: {
      onCreated: (data) => {
        onStreamEvent(c, { t: "life", type: "created", data });
        noteCreated(data.id);
      },
      onEnded: (data) => onStreamEvent(c, { t: "life", type: "ended", data }),
    },
    onState: (state, info) => onStreamState(c, state, info),
  });
  connection = c;
}

/** @param {import("/client.js").GatewayConnection} c @param {any} msg */
function onStreamEvent(c, msg) {
  if (c !== connection) return;
  // `gap` and `unknown` carry no id: they do not move the cursor.
  msg.cursor = msg.type === "gap" || msg.type === "unknown" ? undefined : c.lastEventId;
  msg.at = Date.now();
  // Received in a catch-up burst: "history" on a first connection, "resume" after a reconnect.
  msg.rp = catchUp === null ? false : catchUp.resumed ? "resume" : "history";
  if (catchUp) {
    if (msg.cursor) catchUp.count += 1;
    armQuiet();
  }
  dispatch(msg);
  checkFollow();
}

/**
 * @param {import("/client.js").GatewayConnection} c
 * @param {string} state
 * @param {import("/client.js").StateInfo | undefined} info
 */
function onStreamState(c, state, info) {
  if (c !== connection) return;
  switch (state) {
    case "connecting":
      showConnection({ state: "connecting" });
      return;
    case "live":
      retryDelay = RETRY_MIN_MS;
      beginCatchUp(Boolean(info?.resumed));
      showConnection({ state: "live", resumed: Boolean(info?.resumed) });
      checkFollow();
      return;
    case "reconnecting":
      endCatchUp(false);
      showConnection({ state: "reconnecting" });
      return;
    case "closed":
      // The EventSource gave up (a status other than 200: 401, 404, 503 while draining…): find out why.
      endCatchUp(false);
      connection = null;
      void afterClose();
  }
}

async function afterClose() {
  showConnection({ state: "reconnecting" });
  const sid = model.subscription;
  try {
    if (sid && !(await getSubscription(sid))) {
      // The set expired (or Redis lost it): start over with a new one.
      model.subscription = undefined;
      storeSubscription(null);
    }
  } catch (error) {
    if (describeAuthError(error)) {
      failed(error);
      return;
    }
  }
  scheduleRetry();
}

/** @param {unknown} error */
function failed(error) {
  const auth = describeAuthError(error);
  if (auth) {
    authBlocked = true;
    showAuth(auth);
    showConnection({
      state: "auth",
      message:
        auth.kind === "expired"
          ? "Token expired"
          : auth.kind === "forbidden"
            ? "Not allowed"
            : "Access token needed",
      auth,
    });
    return;
  }
  console.warn("dashboard: connection failed", error);
  scheduleRetry();
}

function scheduleRetry() {
  clearTimeout(retryTimer);
  const delay = retryDelay;
  retryDelay = Math.min(RETRY_MAX_MS, retryDelay * 2);
  showConnection({ state: "offline", retryInMs: delay });
  retryTimer = setTimeout(() => void openConnection(), delay);
}

// Catch-up: after `connected`, the burst of events that were missed (or the history, on a first
// connection) arrives at once; it ends when the stream goes quiet.
/** @type {{resumed: boolean, count: number, quiet?: ReturnType<typeof setTimeout>, cap: ReturnType<typeof setTimeout>} | null} */
let catchUp = null;

/** @param {boolean} resumed */
function beginCatchUp(resumed) {
  endCatchUp(false);
  catchUp = { resumed, count: 0, cap: setTimeout(() => endCatchUp(true), CATCH_UP_MAX_MS) };
  armQuiet();
}

function armQuiet() {
  if (!catchUp) return;
  clearTimeout(catchUp.quiet);
  catchUp.quiet = setTimeout(() => endCatchUp(true), CATCH_UP_QUIET_MS);
}

/** @param {boolean} report */
function endCatchUp(report) {
  if (!catchUp) return;
  clearTimeout(catchUp.quiet);
  clearTimeout(catchUp.cap);
  const { resumed, count } = catchUp;
  catchUp = null;
  if (report) showConnection({ state: "live", resumed, recovered: resumed ? count : null });
  checkFollow();
}

// Following new sessions: `@sessions:created` → PATCH the set (batched), which also starts a panel.
/** @type {Set<string>} */
const pendingFollow = new Set();
let firstPendingAt = 0;
let lastCreatedAt = 0;
let patching = false;
/** @type {ReturnType<typeof setTimeout> | null} */
let followTimer = null;

/**
 * @param {string} id
 * @param {boolean} [panelToo] also when it has a panel (which may be missing from the set)
 */
function noteCreated(id, panelToo = false) {
  if (!SESSION_ID.test(id) || (model.sessions.has(id) && !panelToo)) return;
  const now = Date.now();
  if (pendingFollow.size === 0) firstPendingAt = now;
  pendingFollow.add(id);
  lastCreatedAt = now;
  followTimer ??= setTimeout(onFollowTimer, FOLLOW_QUIET_MS);
}

function onFollowTimer() {
  followTimer = null;
  checkFollow();
  if (pendingFollow.size > 0) followTimer = setTimeout(onFollowTimer, 50);
}

/** Called on every event too: a background tab's timers may be throttled, its events are not. */
function checkFollow() {
  if (pendingFollow.size === 0 || patching || !connection || connection.state !== "live") return;
  // On a first connection, wait for the feed's history: most of its sessions have ended since.
  if (catchUp && !catchUp.resumed) return;
  const now = Date.now();
  if (now - lastCreatedAt < FOLLOW_QUIET_MS && now - firstPendingAt < FOLLOW_MAX_WAIT_MS) return;
  void flushFollow(connection);
}

/** @param {import("/client.js").GatewayConnection} c */
async function flushFollow(c) {
  const candidates = [...pendingFollow];
  pendingFollow.clear();
  const running = candidates.filter(
    (id) => (model.known.get(id)?.ended ?? null) === null || (model.sessions.has(id) && !inSet.has(id)),
  );
  // Sessions that already ended (the feed's history, on load): only the newest few get a panel.
  const room = Math.max(0, settings.keepFinished - model.finished().length);
  const ended = candidates
    .filter((id) => (model.known.get(id)?.ended ?? null) !== null && !model.sessions.has(id))
    .sort((a, b) => (model.known.get(b)?.createdAt ?? "").localeCompare(model.known.get(a)?.createdAt ?? ""))
    .slice(0, room);
  const ids = [...running, ...ended];
  if (ids.length === 0) return;
  const newPanels = ids.filter((id) => !model.sessions.has(id));
  if (newPanels.length > 0) dispatch({ t: "follow", ids: newPanels, at: Date.now() });
  patching = true;
  try {
    for (let i = 0; i < ids.length; i += PATCH_BATCH) {
      const batch = ids.slice(i, i + PATCH_BATCH).filter((id) => !inSet.has(id));
      if (batch.length === 0) continue;
      await c.add(batch);
      for (const id of batch) inSet.add(id);
    }
  } catch (error) {
    if (describeAuthError(error)) failed(error);
    else console.warn("dashboard: could not add sessions to the subscription", error);
    // openConnection() adds every running panel missing from the set; until then, retry.
    for (const id of ids) if (!inSet.has(id)) pendingFollow.add(id);
    firstPendingAt = lastCreatedAt = Date.now();
    if (pendingFollow.size > 0) followTimer ??= setTimeout(onFollowTimer, 2000);
  } finally {
    patching = false;
  }
  schedulePrune();
  checkFollow();
}

/** @type {ReturnType<typeof setTimeout> | null} */
let pruneTimer = null;
function schedulePrune() {
  pruneTimer ??= setTimeout(prune, 1000);
}

/** Keeps the set (and the page) to the newest `keepFinished` finished sessions. */
async function prune() {
  pruneTimer = null;
  const extra = model
    .finished()
    .slice(settings.keepFinished)
    .map((session) => session.id);
  const c = connection;
  if (extra.length === 0 || !c || !leading()) return;
  try {
    const remove = extra.filter((id) => inSet.has(id));
    if (remove.length > 0) await c.remove(remove);
    for (const id of remove) inSet.delete(id);
    dispatch({ t: "drop", ids: extra });
  } catch (error) {
    console.warn("dashboard: could not remove finished sessions from the subscription", error);
  }
}

// ---------------------------------------------------------------- auth

/** @param {{kind: string, message: string}} auth */
function showAuth(auth) {
  ui.authMessage.textContent = auth.message;
  ui.auth.dataset.kind = auth.kind;
  const wasHidden = ui.auth.hidden;
  ui.auth.hidden = false;
  if (wasHidden && auth.kind !== "forbidden") ui.token.focus();
}

function hideAuth() {
  ui.auth.hidden = true;
  ui.token.value = "";
}

function updateForgetToken() {
  ui.forgetToken.hidden = !getToken();
}

ui.authForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = ui.token.value.trim();
  if (!token) return;
  setToken(token);
  channel.post({ t: "token", token });
  updateForgetToken();
  hideAuth();
  if (leading()) {
    authBlocked = false;
    // A new token: a new EventSource (its URL carries the token); it resumes from the cursor.
    const old = connection;
    connection = null;
    old?.close();
    void openConnection();
  }
});

ui.forgetToken.addEventListener("click", () => {
  setToken(null);
  updateForgetToken();
});

// ---------------------------------------------------------------- start and cancel

ui.startForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = ui.message.value.trim();
  if (!message) {
    ui.startStatus.textContent = "Write a message for the agent first.";
    ui.message.focus();
    return;
  }
  /** @type {{message: string, model?: string, instructions?: string}} */
  const body = { message };
  if (ui.model.value.trim()) body.model = ui.model.value.trim();
  if (ui.instructions.value.trim()) body.instructions = ui.instructions.value.trim();
  ui.startButton.disabled = true;
  ui.startStatus.textContent = "Starting…";
  try {
    const ref = await startSession(body, requestOptions());
    ui.startStatus.textContent = `Started session ${ref.id}.`;
    ui.startStatus.dataset.sessionId = ref.id;
    ui.message.value = "";
  } catch (error) {
    const auth = describeAuthError(error);
    if (auth) showAuth(auth);
    ui.startStatus.textContent = `Could not start the run: ${auth?.message ?? (error instanceof Error ? error.message : String(error))}`;
  } finally {
    ui.startButton.disabled = false;
  }
});

// Enter starts the run from the message box; Shift+Enter is a new line.
ui.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.startForm.requestSubmit();
  }
});

/** @param {string} id */
async function cancel(id) {
  try {
    await cancelSession(id, requestOptions());
    announcer.say(`Cancelling session ${id}`);
  } catch (error) {
    // Already ended: its panel shows how.
    if (error instanceof GatewayError && error.status === 409) return;
    const auth = describeAuthError(error);
    if (auth) showAuth(auth);
    throw error;
  }
}

// ---------------------------------------------------------------- filter and settings

ui.filter.addEventListener("change", () => {
  const value = FILTERS.includes(ui.filter.value) ? ui.filter.value : "all";
  ui.views.dataset.filter = value;
  updateCounts();
});

ui.collapseAfter.addEventListener("change", () => {
  settings.collapseAfterSeconds = clamp(ui.collapseAfter.value, 0, 86_400, 30);
  applySettings();
  saveSettings();
});

ui.keepFinished.addEventListener("change", () => {
  settings.keepFinished = clamp(ui.keepFinished.value, 1, 1000, 50);
  applySettings();
  saveSettings();
  if (leading()) schedulePrune();
});

window.addEventListener("storage", (event) => {
  if (event.key !== SETTINGS_KEY) return;
  Object.assign(settings, loadSettings());
  applySettings();
});

setInterval(() => view.tick(model, Date.now()), 1000);

// ---------------------------------------------------------------- start

updateForgetToken();
updateCounts();
const sharing = electLeader(LOCK_NAME, becomeLeader);
if (sharing && role === "starting") {
  role = "follower";
  showRole();
  channel.post({ t: "hello", from: tabId });
  // Until the leader's snapshot arrives (a leader that was just starting may have missed the hello).
  const askAgain = setInterval(() => {
    if (synced || role !== "follower") clearInterval(askAgain);
    else channel.post({ t: "hello", from: tabId });
  }, 1500);
}
