/** The short reading under each table: where the limit was and why, from the run's own numbers. */
import type { ResultLine } from "./lib/context.js";
import type { Results } from "./render.js";
import type { StepResult } from "./scenarios/streams.js";

const n = (value: unknown) => (typeof value === "number" ? value.toLocaleString("en-US") : "–");

/** Which resource a step ran out of, judged from the CPU figures of the step. */
function limitOf(s: StepResult): string {
  if (s.loadgen.saturated) return "the load generator (a thread above 90% ELU): the figure is a lower bound";
  if (s.server.cpuPercent >= 85) return "the server's CPU (one event loop, near 100% of a core)";
  if ((s.redis?.cpuPercent ?? 0) >= 85) return "Redis's CPU";
  const total = s.server.cpuPercent + (s.redis?.cpuPercent ?? 0) + s.loadgen.cpuPercent;
  return `no single process (server ${s.server.cpuPercent}%, Redis ${s.redis?.cpuPercent ?? 0}%, load generator ${s.loadgen.cpuPercent}%: ${Math.round(total)}% in all, so the shared cores were the limit)`;
}

function fanoutReading(rows: Map<string, ResultLine>): string[] {
  const out: string[] = [];
  for (const [target, line] of rows) {
    const d = line.data as { best: StepResult | null; steps: StepResult[] };
    const failed = d.steps.find((s) => !s.pass && s.rate > (d.best?.rate ?? 0));
    if (!d.best) {
      out.push(`- **${target}**: no step passed${failed ? ` (first: ${failed.reasons.join("; ")})` : ""}.`);
      continue;
    }
    out.push(
      `- **${target}**: ${n(d.best.delivered)} events/s at ${n(d.best.rate)} appends/s, p99 ${d.best.latency.p99} ms; ` +
        `above it ${failed ? `(${n(failed.rate)}/s: ${failed.reasons.join("; ")})` : "(no failing step)"} the limit was ${failed ? limitOf(failed) : limitOf(d.best)}. ` +
        `${d.best.bytesPerEvent} bytes per event on the wire, ${d.best.idBytesPerEvent} of them the \`id:\` value.`,
    );
  }
  out.push(
    "- The cost is per socket write, not per event: every server here encodes an event once and writes each",
    "  connection's pending frames in one write per turn of the loop. The gateway also writes a per-connection",
    "  cursor as the `id:` of every event (it cannot be shared between connections, so it is encoded per event",
    "  per connection), reads through Redis pub/sub, and checks each reader's position; raw-node does none of this.",
  );
  return out;
}

export function readings(name: string, results: Results): string {
  const rows = results.get(name);
  if (!rows) return "";
  const lines: string[] = [];
  switch (name) {
    case "fanout":
    case "fanout-staggered":
      lines.push(...fanoutReading(rows));
      break;
    case "dashboard":
      for (const [target, line] of rows) {
        const s = line.data.step as StepResult;
        lines.push(
          `- **${target}**: p50 ${s.latency.p50} ms, p99 ${s.latency.p99} ms at ${n(s.delivered)} events/s; CPU ${s.server.cpuPercent}%, RSS ${s.server.rssMB} MB.`,
        );
      }
      lines.push(
        "- The quiet sessions cost only at connect (one read and one subscription each) and in memory; per event the",
        "  work is the same as in fan-out, so latency here should stay near the idle floor.",
      );
      break;
    case "idle":
      for (const [target, line] of rows) {
        const live = line.data.compactedWithoutYoungGenerationKB;
        lines.push(
          `- **${target}**: ${live == null ? "" : `${live} KB per connection live, `}${line.data.perConnectionKB} KB after a plain GC, idle CPU ${line.data.idleCpuPercent}%.`,
        );
      }
      lines.push(
        "- Node's floor per connection is the socket, the HTTP parser state and the response object; the gateway adds",
        "  a writer, a cursor and one hub reader per session (heartbeats, connection-limit renewals and flushes are",
        "  shared timers; the stream routes bypass Express). The plain-GC figure is higher because setting a",
        "  connection up makes ~180 KB of short-lived garbage (mostly ioredis commands for the first reads) that is",
        "  promoted while it waits on Redis and leaves free space on old-space pages until V8 compacts them. See the notes.",
      );
      break;
    case "replay": {
      const rate = (key: string) => (rows.get(key)?.data.eventsPerSecond as number | undefined) ?? 0;
      const cpu = (key: string) => rows.get(key)?.data.serverCpuPercent;
      lines.push(
        `- Single-session framing: ${n(rate("single"))} events/s (gateway CPU ${cpu("single")}%); multiplexed: ${n(rate("mux"))} events/s (${cpu("mux")}%).`,
        "- Catch-up reads the stream in batches (CATCH_UP_BATCH, one read script call each) and writes each batch as one",
        "  chunk (the next batch is read while this one is written); the multiplexed framing also encodes the cursor",
        "  for every event. Below 100% gateway CPU, part of the time goes to waiting on reads; the run is a third of a",
        "  second long, so single runs swing (240k–320k events/s in runs before this one).",
      );
      break;
    }
    case "agent": {
      const d = rows.get("gateway")?.data as
        | { gateway: { headersMs: number; firstTokenMs: number } }
        | undefined;
      if (d) {
        lines.push(
          `- The gateway's response head came after ${d.gateway.headersMs} ms (both admissions, stream opened; the session is`,
          `  created meanwhile) and the first token after ${d.gateway.firstTokenMs} ms: the upstream request through the openai SDK,`,
          "  then the token's append round trip to Redis, after which the run hands it to the local hub directly (the",
          "  pub/sub notice that follows delivers nothing twice) and the stream flushes it on the next turn.",
        );
      }
      break;
    }
    case "cursor":
      lines.push(
        "- A positioned session costs a varint index gap and a varint millisecond delta from the cursor's base (plus a",
        "  sequence only when it is not 0), base64url-encoded; ended sessions shrink to a bitmap or runs.",
      );
      break;
    case "redis-cost":
      lines.push(
        "- The gateway's Redis work is per appended event (one script call, one PUBLISH), not per subscriber: each",
        "  instance has one subscriber connection, and one notice serves every local reader of a session.",
      );
      break;
  }
  return lines.length ? `\nReading:\n\n${lines.join("\n")}` : "";
}
