/** The workload of the cluster scenarios: runs started on instances, and multiplexed readers over them. */
import { postJson } from "../../helpers/index.js";
import type { GatewayInstance } from "./cluster.js";
import { ResilientMuxClient } from "./mux-client.js";

export interface Run {
  id: string;
  instance: GatewayInstance;
}

/** Starts `count` runs round-robin over `instances`, each emitting exactly `tokens` tokens. */
export async function startRuns(
  instances: readonly GatewayInstance[],
  count: number,
  tokens: number,
  tag: string,
): Promise<Run[]> {
  const runs = Array.from({ length: count }, (_, i) => ({
    id: `${tag}-${String(i).padStart(2, "0")}`,
    instance: instances[i % instances.length]!,
  }));
  await Promise.all(
    runs.map(async (run) => {
      const res = await postJson(`${run.instance.url}/api/v1/sessions`, {
        id: run.id,
        message: `e2e ${tag} [tokens=${tokens}]`,
        metadata: { instance: run.instance.name },
      });
      if (res.status !== 201)
        throw new Error(`starting ${run.id} on ${run.instance.name}: ${res.status} ${res.text}`);
    }),
  );
  return runs;
}

/**
 * `count` clients over `ids`, each watching a contiguous (wrapping) window of `minSize`..`maxSize`
 * sessions; windows overlap and together cover every session.
 */
export function makeClients(
  baseUrl: string,
  ids: readonly string[],
  count: number,
  minSize: number,
  maxSize: number,
  tag: string,
) {
  return Array.from({ length: count }, (_, c) => {
    const start = Math.floor((c * ids.length) / count);
    const size = minSize + (c % (maxSize - minSize + 1));
    const window = Array.from({ length: size }, (_, j) => ids[(start + j) % ids.length]!);
    return new ResilientMuxClient(`${tag}-client-${c}`, baseUrl, [...new Set(window)]);
  });
}

/** Every session has at least `events` events at some client: all runs are streaming. */
export function everySessionStreaming(
  clients: readonly ResilientMuxClient[],
  ids: readonly string[],
  events: number,
): boolean {
  return ids.every((id) =>
    clients.some((client) => client.sessions.includes(id) && client.eventsOf(id).length >= events),
  );
}

export function coverage(clients: readonly ResilientMuxClient[], ids: readonly string[]): string[] {
  return ids.filter((id) => !clients.some((client) => client.sessions.includes(id)));
}

/** Starts reading on every client; the promises are awaited by finishAll (never left unhandled). */
export function startReading(clients: readonly ResilientMuxClient[], timeoutMs: number): Promise<void>[] {
  return clients.map((client) => {
    const running = client.run(timeoutMs);
    running.catch(() => {}); // reported by finishAll, or moot once the test failed earlier
    return running;
  });
}

/** Runs every client to the end; on failure the error lists each unfinished client. */
export async function finishAll(
  clients: readonly ResilientMuxClient[],
  running: Promise<void>[],
): Promise<void> {
  const results = await Promise.allSettled(running);
  const failures = results.flatMap((result, i) =>
    result.status === "rejected" ? [`${clients[i]!.name}: ${(result.reason as Error).message}`] : [],
  );
  if (failures.length > 0) throw new Error(`${failures.length} clients failed:\n${failures.join("\n")}`);
}
