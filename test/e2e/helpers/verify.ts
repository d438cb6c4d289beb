/** Reading a session's whole stored story back, and comparing what each client received against it. */
import { collectUntilClosed, getJson } from "../../helpers/index.js";
import type { ReceivedEvent, ResilientMuxClient } from "./mux-client.js";

export interface StoredSession {
  id: string;
  /** Every event of the session, in order, from a fresh single-session read. */
  events: ReceivedEvent[];
  /** Their positions (stream entry ids). */
  positions: string[];
  /** GET /api/v1/sessions/:id */
  status: string;
  lastEventId: string | null;
}

const TERMINAL_TYPES = new Set(["done", "error", "cancelled"]);

function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `GET /api/v1/sessions/:id/stream` from the beginning until the server closes it after the terminal event. */
export async function readStoredSession(
  baseUrl: string,
  id: string,
  timeoutMs = 20_000,
): Promise<StoredSession> {
  const conn = await collectUntilClosed(`${baseUrl}/api/v1/sessions/${id}/stream`, { timeoutMs });
  if (conn.status !== 200)
    throw new Error(`stream of ${id}: status ${conn.status}: ${conn.raw().slice(0, 300)}`);
  const info = await getJson(`${baseUrl}/api/v1/sessions/${id}`);
  if (info.status !== 200)
    throw new Error(`GET session ${id}: status ${info.status}: ${info.text.slice(0, 300)}`);
  return {
    id,
    events: conn.events.map((event) => ({ type: event.event, data: parseData(event.data) })),
    positions: conn.events.map((event) => event.id ?? ""),
    status: info.body.status as string,
    lastEventId: (info.body.lastEventId as string | null) ?? null,
  };
}

export async function readStoredSessions(
  baseUrl: string,
  ids: readonly string[],
): Promise<Map<string, StoredSession>> {
  const stored = new Map<string, StoredSession>();
  // A few at a time: the machine is small and other suites run too.
  const queue = [...ids];
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift())
      stored.set(id, await readStoredSession(baseUrl, id));
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return stored;
}

/** The terminal event of a stored session (its last event), or undefined. */
export function terminalOf(session: StoredSession): ReceivedEvent | undefined {
  const last = session.events[session.events.length - 1];
  return last && TERMINAL_TYPES.has(last.type) ? last : undefined;
}

export const tokenCount = (events: readonly ReceivedEvent[]) =>
  events.filter((e) => e.type === "token").length;

/**
 * Problems of the stored sessions themselves: exactly one terminal event and it is the last, starting
 * with `start`, the session's lastEventId is the terminal event's position (nothing after it).
 */
export function storyProblems(stored: Map<string, StoredSession>): string[] {
  const problems: string[] = [];
  for (const session of stored.values()) {
    const types = session.events.map((event) => event.type);
    const terminals = types.filter((type) => TERMINAL_TYPES.has(type)).length;
    if (types[0] !== "start") problems.push(`${session.id}: first stored event is ${types[0]}, not start`);
    if (terminals !== 1) problems.push(`${session.id}: ${terminals} terminal events stored`);
    if (!terminalOf(session))
      problems.push(`${session.id}: the last stored event (${types.at(-1)}) is not terminal`);
    if (session.lastEventId !== session.positions.at(-1)) {
      problems.push(
        `${session.id}: lastEventId ${session.lastEventId} is not the terminal event's position ${session.positions.at(-1)} (events after the end?)`,
      );
    }
    if (session.status !== terminalOf(session)?.type) {
      problems.push(
        `${session.id}: status ${session.status} but terminal event ${terminalOf(session)?.type}`,
      );
    }
  }
  return problems;
}

/** Each client's events of each of its sessions must equal the stored sequence: all of them, once, in order. */
export function deliveryProblems(
  clients: readonly ResilientMuxClient[],
  stored: Map<string, StoredSession>,
): string[] {
  const problems: string[] = [];
  for (const client of clients) {
    for (const anomaly of client.anomalies) problems.push(`${client.name}: ${anomaly}`);
    for (const id of client.sessions) {
      const got = client.eventsOf(id);
      const want = stored.get(id)?.events;
      if (!want) {
        problems.push(`${client.name}/${id}: no stored read`);
        continue;
      }
      const mismatch = firstMismatch(got, want);
      if (mismatch !== -1) {
        const storedPositions = stored.get(id)?.positions ?? [];
        const around = (list: readonly ReceivedEvent[], positions: (i: number) => string | undefined) =>
          list
            .slice(Math.max(0, mismatch - 2), mismatch + 3)
            .map(
              (e, k) =>
                `${positions(mismatch - Math.min(2, mismatch) + k) ?? "?"} ${e.type} ${JSON.stringify(e.data)}`,
            )
            .join(" | ");
        problems.push(
          `${client.name}/${id}: received ${got.length} events, stored ${want.length}; first difference at #${mismatch}:\n` +
            `    got:    ${around(got, (i) => got[i]?.position)}\n` +
            `    stored: ${around(want, (i) => storedPositions[i])}`,
        );
      }
    }
  }
  return problems;
}

function firstMismatch(got: readonly ReceivedEvent[], want: readonly ReceivedEvent[]): number {
  const length = Math.max(got.length, want.length);
  for (let i = 0; i < length; i++) {
    const a = got[i];
    const b = want[i];
    if (!a || !b || a.type !== b.type || JSON.stringify(a.data) !== JSON.stringify(b.data)) return i;
  }
  return -1;
}
