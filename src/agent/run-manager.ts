/**
 * Starts agent runs, executes them on this instance, and ends them exactly once: `done`, `error`
 * (upstream failure, crashed instance, store outage) or `cancelled` (from any instance, through the
 * control channel). A run holds a lease in the store while it streams; the sweeper ends the sessions
 * of runs whose instance died.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import type { PubSub } from "../store/pubsub.js";
import type { EventInput, SessionInfo, SessionStatus, StreamStore } from "../store/types.js";
import { SIMULATED_MODEL, selectProvider } from "./index.js";
import { RunWriter } from "./run-writer.js";
import { type ChatMessage, type ModelProvider, UpstreamError, type Usage } from "./types.js";

export interface RunRequest {
  id?: string;
  messages: ChatMessage[];
  model?: string;
  instructions?: string;
  metadata?: Record<string, unknown>;
  owner?: string | null;
  /** A place in the owner's concurrent-run limit: renewed with the lease, released when the run ends. */
  slot?: { refresh(): Promise<void>; release(): Promise<void> };
}

export interface RunManagerOptions {
  instanceId: string;
  defaultModel: string;
  leaseMs: number;
  cancelGraceMs: number;
  runBufferMaxEvents: number;
}

export interface RunManagerDeps {
  store: StreamStore;
  pubsub: PubSub;
  controlChannel: string;
  providers: { openai?: ModelProvider; simulated: ModelProvider };
  metrics: Metrics;
  logger: Logger;
  clock?: () => number;
}

export type StartOutcome = { kind: "started"; session: SessionInfo } | { kind: "exists" };

interface ControlMessage {
  type: "cancel";
  id: string;
  reason: string;
}

/** Short, URL-safe and unguessable: 16 random bytes. */
export function newSessionId(): string {
  return randomBytes(16).toString("base64url");
}

export class RunManager {
  private readonly running = new Map<
    string,
    { abort: AbortController; cancelReason: string | null; done: Promise<void> }
  >();
  private sweeper: NodeJS.Timeout | undefined;
  /** When the sweeper first saw the store ready after an outage (or at start); null while it is down. */
  private storeReadySince: number | null = null;
  private readonly clock: () => number;

  constructor(
    private readonly deps: RunManagerDeps,
    private readonly options: RunManagerOptions,
  ) {
    this.clock = deps.clock ?? Date.now;
  }

  async init(): Promise<void> {
    await this.deps.pubsub.subscribe(this.deps.controlChannel, (message) => this.onControl(message));
  }

  get activeRuns(): number {
    return this.running.size;
  }

  async start(request: RunRequest): Promise<StartOutcome> {
    const id = request.id ?? newSessionId();
    const requestedModel = request.model ?? this.options.defaultModel;
    const provider = selectProvider(requestedModel, this.deps.providers);
    const model = provider.name === "simulated" ? SIMULATED_MODEL : requestedModel;
    const createdAt = this.clock();
    const session = { id, model, metadata: request.metadata ?? {}, owner: request.owner ?? null, createdAt };
    if (!(await this.deps.store.createSession(session))) return { kind: "exists" };
    // The lease is taken while the upstream request starts (not before): one round trip less to the
    // first token. Until it lands, nothing can sweep the run: the session has no lease-index entry yet.
    this.deps.store.holdLease(id, this.options.instanceId, this.options.leaseMs).catch((error: unknown) => {
      this.deps.logger.warn(
        { err: error, sessionId: id },
        "could not take the run's lease; renewing retries it",
      );
    });

    const messages: ChatMessage[] = request.instructions
      ? [{ role: "system", content: request.instructions }, ...request.messages]
      : request.messages;
    const abort = new AbortController();
    const entry = { abort, cancelReason: null as string | null, done: Promise.resolve() };
    this.running.set(id, entry);
    this.deps.metrics.runsStarted.inc();
    entry.done = this.execute(id, model, provider, messages, entry, request.slot).finally(() => {
      this.running.delete(id);
      request.slot?.release().catch(() => {});
    });
    return {
      kind: "started",
      session: { ...session, status: "running", lastEventId: null, terminalId: null },
    };
  }

  /**
   * Cancels a run wherever it runs. Returns the session's final status, or null when unknown.
   * Throws nothing for an ended session: the caller sees its status.
   */
  async cancel(
    id: string,
    reason = "requested",
  ): Promise<{ before: SessionInfo | null; status: SessionStatus | null }> {
    const before = await this.deps.store.getSession(id);
    if (before?.status !== "running") return { before, status: before?.status ?? null };
    const message: ControlMessage = { type: "cancel", id, reason };
    await this.deps.pubsub.publish(this.deps.controlChannel, JSON.stringify(message));
    const deadline = this.clock() + this.options.cancelGraceMs;
    while (this.clock() < deadline) {
      await sleep(25);
      const now = await this.deps.store.getSession(id);
      if (now && now.status !== "running") return { before, status: now.status };
    }
    // Nobody ended it in time (an outside producer's session, or a stuck instance): end it here.
    await this.deps.store.append(id, [{ type: "cancelled", data: { reason } }]);
    const after = await this.deps.store.getSession(id);
    return { before, status: after?.status ?? "cancelled" };
  }

  /** Ends sessions whose run's lease expired (their instance died). Exactly one terminal event per session. */
  startSweeper(): void {
    // Checked four times per lease period: a crashed run is ended at most ~1.25 leases after its last renewal.
    const intervalMs = Math.max(50, Math.floor(this.options.leaseMs / 4));
    const tick = () => {
      this.sweep().catch((error: unknown) => this.deps.logger.warn({ err: error }, "lease sweep failed"));
      this.sweeper = setTimeout(tick, intervalMs * (0.75 + Math.random() * 0.5));
      this.sweeper.unref();
    };
    this.sweeper = setTimeout(tick, intervalMs);
    this.sweeper.unref();
  }

  async sweep(): Promise<number> {
    const now = this.clock();
    if (!this.deps.store.isReady()) {
      this.storeReadySince = null;
      return 0;
    }
    // Leases also lapse while Redis is unreachable, not only when their instance dies. Instances
    // reconnect at different moments, so right after an outage every live run's lease looks expired
    // until its owner renews it (every leaseMs / 3). Sweep only once the store has been back for a
    // whole lease period: otherwise a healthy run would be ended as interrupted.
    this.storeReadySince ??= now;
    if (now - this.storeReadySince < this.options.leaseMs) return 0;
    let interrupted = 0;
    for (const id of await this.deps.store.expiredLeases(this.clock(), 100)) {
      if (this.running.has(id)) continue;
      const outcome = await this.deps.store.append(
        id,
        [
          {
            type: "error",
            data: { code: "interrupted", message: "the instance running this session stopped" },
          },
        ],
        { requireNoLease: true },
      );
      if (outcome.kind === "appended") {
        interrupted++;
        this.deps.metrics.runsEnded.inc({ status: "interrupted" });
        this.deps.logger.warn({ sessionId: id }, "ended an interrupted run");
      }
      if (outcome.kind !== "leased") await this.deps.store.forgetLease(id);
    }
    return interrupted;
  }

  /** Resolves when every run of this instance has ended, or after `timeoutMs`. */
  async waitForRuns(timeoutMs: number): Promise<boolean> {
    const all = Promise.all([...this.running.values()].map((entry) => entry.done)).then(() => true);
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref());
    return Promise.race([all, timeout]);
  }

  stop(): void {
    clearTimeout(this.sweeper);
  }

  private onControl(text: string): void {
    let message: ControlMessage;
    try {
      message = JSON.parse(text) as ControlMessage;
    } catch {
      return;
    }
    if (message.type !== "cancel") return;
    const entry = this.running.get(message.id);
    if (!entry) return;
    entry.cancelReason = message.reason;
    entry.abort.abort();
  }

  private async execute(
    id: string,
    model: string,
    provider: ModelProvider,
    messages: ChatMessage[],
    entry: { abort: AbortController; cancelReason: string | null },
    slot: RunRequest["slot"],
  ): Promise<void> {
    const { store, metrics, logger } = this.deps;
    const log = logger.child({ sessionId: id });
    let overflowed = false;
    const writer = new RunWriter(store, id, `${this.options.instanceId}.${id}`, {
      maxBufferedEvents: this.options.runBufferMaxEvents,
      retryDelayMs: 200,
      onOverflow: () => {
        overflowed = true;
        entry.abort.abort();
      },
      onEndedElsewhere: () => entry.abort.abort(),
      onAppended: (events) => {
        for (const event of events) metrics.eventsAppended.inc({ type: event.type });
      },
    });
    const lease = setInterval(
      () => {
        slot?.refresh().catch(() => {});
        store.holdLease(id, this.options.instanceId, this.options.leaseMs).catch(() => {
          // Store unreachable: the lease may lapse; the append script then refuses nothing of ours
          // unless another instance has ended the session, which the writer reports.
        });
      },
      Math.max(50, Math.floor(this.options.leaseMs / 3)),
    );
    lease.unref();

    const startedAt = this.clock();
    writer.push({
      type: "start",
      data: {
        model,
        createdAt: new Date(startedAt).toISOString(),
        ...(provider.name === "simulated" ? { simulated: true } : {}),
      },
    });
    log.info(
      { model, provider: provider.name },
      provider.name === "simulated" ? "run started (SIMULATED model)" : "run started",
    );

    let tokens = 0;
    let usage: Usage | null = null;
    let finishReason = "stop";
    let terminal: EventInput;
    try {
      for await (const chunk of provider.stream({ model, messages, signal: entry.abort.signal })) {
        if (entry.abort.signal.aborted) break;
        if (chunk.kind === "token") {
          if (tokens === 0) metrics.timeToFirstToken.observe((this.clock() - startedAt) / 1000);
          tokens++;
          writer.push({ type: "token", data: { content: chunk.content } });
        } else if (chunk.kind === "usage") {
          usage = chunk.usage;
        } else {
          finishReason = chunk.reason;
        }
      }
      terminal = this.endingEvent(id, entry, overflowed, null) ?? {
        type: "done",
        data: { session_id: id, total_tokens: usage?.total_tokens ?? tokens, finish_reason: finishReason },
      };
      if (terminal.type === "done" && usage) writer.push({ type: "usage", data: { ...usage } });
    } catch (error) {
      terminal = this.endingEvent(id, entry, overflowed, error) ?? {
        type: "error",
        data: { code: "upstream_error", message: "the model stream failed" },
      };
    }
    clearInterval(lease);
    await writer.finish(terminal);
    if (!writer.isStopped) {
      await store.releaseLease(id).catch(() => {});
      metrics.runsEnded.inc({
        status: terminal.type === "error" ? String(terminal.data.code) : terminal.type,
      });
    }
    log.info({ status: terminal.type, tokens }, "run ended");
  }

  /** The terminal event for a run that was stopped or failed, or null when it completed normally. */
  private endingEvent(
    id: string,
    entry: { abort: AbortController; cancelReason: string | null },
    overflowed: boolean,
    error: unknown,
  ): EventInput | null {
    if (overflowed) {
      return {
        type: "error",
        data: {
          code: "store_unavailable",
          message: "the store was unreachable for too long; output was cut short",
        },
      };
    }
    if (entry.abort.signal.aborted)
      return { type: "cancelled", data: { reason: entry.cancelReason ?? "requested" } };
    if (error instanceof UpstreamError)
      return { type: "error", data: { code: error.code, message: error.message } };
    if (error) this.deps.logger.warn({ err: error, sessionId: id }, "run failed");
    return null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
