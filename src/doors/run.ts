/**
 * What every door does with a session: start a run (admitted as any run is: scope, limits, draining),
 * stream a session through a door's frames on an SSE response, collect a run's events for one JSON
 * answer, and find a session a request names (the access rules of auth/policy.ts).
 */
import type { RunRequest } from "../agent/run-manager.js";
import { assertMaySession, mayReadSession, requireScope } from "../auth/policy.js";
import type { Principal } from "../auth/principal.js";
import { AppError, errors } from "../errors.js";
import type { AppContext } from "../http/context.js";
import { assertAcceptingWork } from "../http/guards.js";
import type { StreamRequest } from "../http/stream-request.js";
import { startStream } from "../http/streams.js";
import { type Admission, admitConnection, admitRun } from "../limits/admission.js";
import type { SessionInfo, StoredEvent } from "../store/types.js";
import { DoorStream, doorReadOptions } from "./door-stream.js";
import { type Collector, collectorSink, type FrameEncoder, sseSink } from "./frames.js";

export interface StartedRun {
  id: string;
  session: SessionInfo;
  /** The place this request's own reader holds among the connections. */
  admission: Admission;
  /** Lets the run's events go (once this request's reader has joined the hub); must be called. */
  readerJoined(): void;
}

/**
 * Starts a run for a stream that reads it on this request (`POST /api/v1/agent/stream` and the doors):
 * both admissions at once (every round trip here delays the run's first token), the upstream request
 * on its way while the session is created, its events held until this request's reader joins, so
 * that its first batch is handed over to it locally.
 */
export async function startDoorRun(
  context: AppContext,
  principal: Principal,
  ip: string | undefined,
  request: RunRequest,
): Promise<StartedRun> {
  assertAcceptingWork(context);
  const [run, stream] = await Promise.allSettled([
    admitRun(context, principal, ip, undefined),
    admitConnection(context, principal, ip),
  ]);
  if (run.status === "rejected" || stream.status === "rejected") {
    if (run.status === "fulfilled") await run.value.slot?.release();
    if (stream.status === "fulfilled") await stream.value.release();
    throw run.status === "rejected" ? run.reason : (stream as PromiseRejectedResult).reason;
  }
  let releaseWatch = () => {};
  let readerJoined: () => void = () => {};
  const readerReady = new Promise<void>((resolve) => {
    readerJoined = () => {
      resolve();
      releaseWatch();
    };
  });
  try {
    const starting = context.runs.start({ ...request, ...run.value, readerReady });
    // The stream's notices are subscribed to while the session is created: after the session's
    // creation and the upstream request are on their way (the SUBSCRIBE is written at once).
    releaseWatch = context.hub.prewatch(run.value.id!);
    const outcome = await starting;
    if (outcome.kind !== "started") {
      // Cannot happen for a generated id.
      await run.value.slot?.release();
      throw new AppError("internal", "could not create the session");
    }
    return { id: outcome.session.id, session: outcome.session, admission: stream.value, readerJoined };
  } catch (error) {
    readerJoined();
    await stream.value.release();
    throw error;
  }
}

/**
 * Streams a session through a door's frames on the request's response, from its first event (a run
 * this request just started, `created`, is read live from the start). The response ends after the
 * session's terminal event.
 */
export async function streamThroughDoor(
  context: AppContext,
  target: StreamRequest,
  sessionId: string,
  encode: FrameEncoder,
  options: {
    admission: Admission;
    created: boolean;
    headers?: Record<string, string>;
    started?: StartedRun;
    /** The incarnation the reader is bound to (policy.ts readIncarnation); null or absent: any. */
    incarnation?: number | null;
  },
): Promise<void> {
  let opened = false;
  try {
    const door = startStream(
      context,
      target,
      {
        admission: options.admission,
        kind: options.created ? "agent" : "session",
        framing: "single",
        closeWhenAllEnded: true,
        tracker: null,
        ...(options.headers ? { headers: options.headers } : {}),
      },
      (deps) =>
        new DoorStream(
          { ...deps, sink: sseSink(deps.writer, encode) },
          doorReadOptions(context.config.catchUpBatch),
        ),
    );
    opened = true;
    const joined = door.read(sessionId, options.created, options.incarnation ?? null);
    options.started?.readerJoined();
    await joined;
  } finally {
    options.started?.readerJoined();
    if (!opened) await options.admission.release();
  }
}

/**
 * Collects a run this request started until `until` (default: its terminal event), for one JSON
 * answer. The run goes on if the client leaves; the wait ends then.
 */
export async function collectRun(
  context: AppContext,
  target: StreamRequest,
  started: StartedRun,
  until?: Parameters<typeof collectorSink>[0],
): Promise<Collector> {
  const collector = collectorSink(until);
  const { hub, store, metrics } = context;
  const door = new DoorStream(
    { hub, store, metrics, logger: target.logger, sink: collector },
    doorReadOptions(context.config.catchUpBatch),
  );
  const leave = () => door.close();
  target.res.once("close", leave);
  try {
    const joined = door.read(started.id, true);
    started.readerJoined();
    await joined;
    await door.done;
  } finally {
    started.readerJoined();
    target.res.off("close", leave);
    door.close();
    await started.admission.release();
  }
  return collector;
}

/** The session a read request names, if this principal may read it: 404 when there is none. */
export async function readableSession(
  context: AppContext,
  principal: Principal,
  id: string,
): Promise<SessionInfo> {
  if (context.state.draining) throw errors.draining();
  requireScope(principal, "subscribe");
  const info = await context.store.getSession(id);
  assertMaySession(mayReadSession(principal, id, info), id);
  if (!info) throw errors.notFound(`no session ${id}`);
  return info;
}

/** Every event of a session stored so far (a snapshot first when it was compacted). */
export async function storedEvents(context: AppContext, id: string): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  const batch = context.config.catchUpBatch;
  let after: string | null = null;
  for (;;) {
    const { events: read } = await context.store.read(id, after, batch);
    events.push(...read);
    if (read.length < batch) return events;
    after = read[read.length - 1]!.id;
  }
}
