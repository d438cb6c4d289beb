/** The short reading under each table: where the limit was and why, from the run's own numbers. */
import type { ResultLine, Results } from "./lib/context.js";
import { agentReading } from "./render-agent.js";
import { fanoutReading, idleReading, STAGES_READING } from "./render-fanout.js";
import type { StepResult } from "./scenarios/streams.js";

const n = (value: unknown) => (typeof value === "number" ? value.toLocaleString("en-US") : "–");

function compactionReading(rows: Map<string, ResultLine>): string[] {
  const line = [...rows.values()][0];
  if (!line) return [];
  type Session = {
    bound: number | null;
    keptEvents: number;
    events: number;
    bytesPerSession: number;
    snapshotBytes: number;
    snapshotTextBytes?: number;
    byKey?: Record<string, number>;
  };
  type Read = { label: string; from: string; scriptMicrosPerRead: number; msPerRead: number; events: number };
  type RecordRow = {
    batch: number;
    shape: string;
    recordMemoryPerAppend?: number;
    recordScriptMicrosPerAppend?: number;
  };
  const d = line.data as { sessions: Session[]; reads: Read[]; records: RecordRow[] };
  const ttl = Number(line.params.idempotencyTtlSeconds);
  const whole = d.sessions.find((s) => s.bound === null);
  const out: string[] = [];
  if (whole) {
    const parts = d.sessions
      .filter((s) => s.bound !== null)
      .map(
        (s) =>
          `${n(s.bound)} kept: ${kib(s.bytesPerSession)} KiB (${Math.round((s.bytesPerSession / whole.bytesPerSession) * 100)}%${s.keptEvents === s.events ? ", nothing trimmed" : `, snapshot event ${n(s.snapshotBytes)} B`})`,
      );
    out.push(
      `- A ${n(Number(line.params.tokens))}-token session holds ${kib(whole.bytesPerSession)} KiB of Redis with nothing trimmed (${Math.round(whole.bytesPerSession / whole.events)} B per event); ${parts.join("; ")}.` +
        (d.sessions.some((s) => s.bound === 10_000 && s.keptEvents === s.events)
          ? ` The default bound (10,000) trims nothing of a ${n(Number(line.params.tokens))}-token run: the script trims in chunks of 1% of the bound (at most 100 events), so compaction starts once a session is that far past it.`
          : ""),
    );
  }
  const read = (label: string, from: string) => d.reads.find((r) => r.label === label && r.from === from);
  const plain = read("all", "start");
  for (const r of d.reads.filter((x) => x.from === "start" && x.label !== "all" && x.events > 0)) {
    const first = d.sessions.find((s) => (s.bound === null ? "all" : n(s.bound)) === r.label);
    if (!plain || !first || first.keptEvents === first.events) continue;
    const tail = read(r.label, "tail");
    // The snapshot's own share: this read less the same session's read of as many plain events.
    const base =
      tail && tail.events === r.events - 1
        ? { read: tail, what: `${tail.events} plain events of the same session` }
        : plain.events === r.events - 1
          ? { read: plain, what: `the ${plain.events} events of the uncompacted read` }
          : null;
    const own = base
      ? ` (the snapshot's own share, against ${base.what}: ${Math.round(r.scriptMicrosPerRead - base.read.scriptMicrosPerRead)} µs for ${n(first.snapshotBytes)} bytes)`
      : "";
    out.push(
      `- Reading from the start with ${r.label} kept (the snapshot, then ${r.events - 1} events): ${r.scriptMicrosPerRead} µs of script time${own} and ${r.msPerRead} ms per read here, ` +
        `against ${plain.scriptMicrosPerRead} µs and ${plain.msPerRead} ms for the first ${plain.events} events of the uncompacted session.`,
    );
  }
  const slack = d.sessions.filter((s) => s.snapshotTextBytes && s.byKey?.["snap:content"]);
  if (slack.length) {
    out.push(
      `- The snapshot's text is one string grown by \`APPEND\`, which leaves spare room (Redis grows a string by doubling up to 1 MB): ${slack
        .map(
          (s) =>
            `${n(s.bound)} kept: ${n(s.byKey!["snap:content"])} B for ${n(s.snapshotTextBytes)} B of text (${Math.round((s.byKey!["snap:content"]! / s.snapshotTextBytes!) * 100 - 100)}% more)`,
        )
        .join("; ")}.`,
    );
  }
  const random = d.records.find((r) => r.batch === 1 && r.shape === "random");
  if (random?.recordMemoryPerAppend !== undefined) {
    const perRate = (rate: number) => mibText(random.recordMemoryPerAppend! * rate * ttl);
    out.push(
      `- A request record costs about ${Math.round(random.recordMemoryPerAppend)} B of Redis per producer append (one token, random id; more with an \`Idempotency-Key\` ` +
        `or a larger reply) for ${ttl} s: ${perRate(100)} held at 100 appends/s, ${perRate(1_000)} at 1,000/s, ${perRate(10_000)} at 10,000/s. ` +
        `Script time per append ${random.recordScriptMicrosPerAppend !== undefined && random.recordScriptMicrosPerAppend >= 0 ? "+" : ""}${random.recordScriptMicrosPerAppend} µs with the record. Run batches carry a writer stamp instead and keep their reply in the meta hash (no key per append).`,
    );
  }
  return out;
}

const kib = (bytes: number) => (bytes / 1024).toFixed(1);
const mibText = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MiB`;

export function readings(name: string, results: Results): string {
  const rows = results.get(name);
  if (!rows) return "";
  const lines: string[] = [];
  switch (name) {
    case "fanout":
    case "fanout-staggered":
      lines.push(...fanoutReading(rows));
      break;
    case "stages":
      lines.push(...STAGES_READING);
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
      lines.push(...idleReading(rows));
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
      const line = rows.get("gateway");
      if (line) lines.push(...agentReading(line));
      break;
    }
    case "cursor":
      lines.push(
        "- A positioned session costs a varint index gap and a varint millisecond delta from the cursor's base (plus a",
        "  sequence only when it is not 0), base64url-encoded; ended sessions shrink to a bitmap or runs.",
      );
      break;
    case "compaction":
      lines.push(...compactionReading(rows));
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
