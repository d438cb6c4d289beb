/**
 * Gateway instances as real processes on fixed loopback ports (so nginx's upstream list and the
 * Prometheus targets stay valid when an instance is killed and started again on the same port).
 */
import {
  freePort,
  type GatewayExit,
  type GatewayProcess,
  getJson,
  startGatewayProcess,
} from "../../helpers/index.js";
import { waitUntil } from "./process.js";

/** Starting `node --import tsx src/server.ts` compiles on the fly: slow on a busy 2-core machine. */
const HEALTH_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 30_000;

/**
 * The environment every e2e instance shares: one Redis and key prefix, short lease / drain / heartbeat
 * periods so failures play out in seconds, and a slow simulated model (runs last seconds, so there is
 * a "mid-stream" to strike in). Per-client limits are raised: the suite starts tens of runs at once
 * from one address, which is the load it exercises, not abuse.
 */
export function e2eGatewayEnv(redisUrl: string, keyPrefix: string): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: keyPrefix,
    LEASE_MS: "2000",
    DRAIN_MS: "1000",
    HEARTBEAT_MS: "1000",
    SIMULATED_TOKENS_PER_SECOND: "40",
    LOG_LEVEL: "warn",
    LIMIT_RUNS_PER_MINUTE: "100000",
    LIMIT_CONCURRENT_RUNS: "100000",
    LIMIT_CONNECTIONS_PER_IP: "100000",
    LIMIT_CONNECTIONS_PER_SUBJECT: "100000",
    LIMIT_NEW_SESSIONS_PER_MINUTE: "100000",
    LIMIT_REQUESTS_IN_FLIGHT_PER_IP: "100000",
  };
}

export class GatewayInstance {
  private proc: GatewayProcess | undefined;
  private exitInfo: GatewayExit | undefined;
  /** Logs of earlier lives of this slot (an instance killed and started again). */
  private previousLogs = "";

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `127.0.0.1:<port>`: an nginx upstream, a Prometheus target. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  isRunning(): boolean {
    return this.proc !== undefined && this.exitInfo === undefined;
  }

  /** Resolves with the exit of the current process. */
  get exited(): Promise<GatewayExit> {
    if (!this.proc) return Promise.resolve({ code: null, signal: null });
    return this.proc.exited;
  }

  async start(): Promise<void> {
    if (this.isRunning()) return;
    if (this.proc) this.previousLogs += this.proc.logs();
    this.exitInfo = undefined;
    const proc = await startGatewayProcess(
      { ...this.env, PORT: String(this.port) },
      { healthTimeoutMs: HEALTH_TIMEOUT_MS },
    );
    this.proc = proc;
    proc.exited.then((info) => {
      if (this.proc === proc) this.exitInfo = info;
    });
  }

  kill(signal: NodeJS.Signals): void {
    this.proc?.kill(signal);
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }

  async ready(): Promise<number> {
    try {
      return (await getJson(`${this.url}/readyz`)).status;
    } catch {
      return 0;
    }
  }

  logs(): string {
    return this.previousLogs + (this.proc?.logs() ?? "");
  }
}

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

export async function createInstances(
  names: string[],
  env: Record<string, string>,
): Promise<GatewayInstance[]> {
  const ports = await freePorts(names.length);
  return names.map((name, index) => new GatewayInstance(name, ports[index]!, env));
}

/** Starts every instance that is not running (in parallel) and waits until all are ready. */
export async function ensureRunning(instances: readonly GatewayInstance[]): Promise<void> {
  await Promise.all(
    instances.filter((instance) => !instance.isRunning()).map((instance) => instance.start()),
  );
  // /healthz (what the start waits for) does not say the Redis connection is up; /readyz does.
  await waitUntil(
    async () =>
      (await Promise.all(instances.map((instance) => instance.ready()))).every((status) => status === 200),
    READY_TIMEOUT_MS,
    () => `not every instance is ready:\n${logTails(instances)}`,
  );
}

/** The last `chars` characters of every instance's log, for failure messages. */
export function logTails(instances: readonly GatewayInstance[], chars = 1_500): string {
  return instances
    .map((instance) => `--- ${instance.name} (${instance.url}) ---\n${instance.logs().slice(-chars)}`)
    .join("\n");
}
