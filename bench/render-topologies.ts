/** BENCHMARKS.md's "Redis topologies" section, from the `topologies` scenario's one result line. */
import type { ResultLine } from "./lib/context.js";
import type { TopologyStep } from "./scenarios/topologies.js";

type Rows = Map<string, ResultLine> | undefined;

const fmt = (value: number | null | undefined, digits = 1) =>
  value === null || value === undefined || !Number.isFinite(value)
    ? "–"
    : (Math.round(value * 10 ** digits) / 10 ** digits).toLocaleString("en-US");
/** One value per round, in round order. */
const rounds = (values: Array<number | null>, digits = 1) => values.map((v) => fmt(v, digits)).join(", ");

/** The primaries' CPU together per append of the deployment (each primary's share, weighted by its appends). */
function primariesPerAppend(step: TopologyStep, aboveIdle: boolean): number | null {
  let micros = 0;
  let appends = 0;
  for (const node of step.nodes) {
    if (node.role !== "primary") continue;
    const per = aboveIdle ? node.cpuMicrosPerAppendAboveIdle : node.cpuMicrosPerAppend;
    if (per === null) continue;
    micros += per * node.appends;
    appends += node.appends;
  }
  return appends > 0 ? micros / appends : null;
}

function replicasPerAppend(step: TopologyStep): number | null {
  let micros = 0;
  let appends = 0;
  for (const node of step.nodes) {
    if (node.role !== "replica" || node.cpuMicrosPerAppend === null) continue;
    micros += node.cpuMicrosPerAppend * node.appends;
    appends += node.appends;
  }
  return appends > 0 ? micros / appends : null;
}

export function topologiesSection(rows: Rows): string {
  const line = rows && [...rows.values()][0];
  if (!line) return "";
  const p = line.params;
  const steps = (line.data.steps ?? []) as TopologyStep[];
  const topologies = [...new Set(steps.map((s) => s.topology))];
  const rates = [...new Set(steps.filter((s) => s.extraInstances === 0).map((s) => s.rate))];
  const plain = (topology: string, rate: number) =>
    steps
      .filter((s) => s.topology === topology && s.rate === rate && s.extraInstances === 0)
      .sort((a, b) => a.round - b.round);
  const out = [
    "## Redis topologies",
    "",
    `One gateway process on each of: one Redis (\`REDIS_URL\`); a 3-shard Redis Cluster, each primary with a replica (\`REDIS_CLUSTER_NODES\`); a primary with one replica behind 3 Sentinels with durable acknowledgements (\`REDIS_SENTINELS\`, \`REDIS_WAIT_REPLICAS=1\`). ` +
      `${p.connections} connections × ${p.sessionsPerConnection} of ${p.sessions} sessions (${p.subscribersPerSession} subscribers per session), one token per append at fixed rates, sessions staggered over the producer's ${p.tickMs} ms tick, ${Number(p.measureMs) / 1000} s measured per step after ${Number(p.warmupMs) / 1000} s of warm-up; ` +
      `${p.rounds} rounds, the topologies alternated (the order rotates each round). Values are per round, in order. ` +
      "Redis CPU is `used_cpu_user + used_cpu_sys` of each process, sampled just before and after each step (warm-up, window and drain), divided by the appends made on that process's shard in that span (exact: the producer counts each session's appends, and each session's shard is its slot's owner) and by the events delivered from them; " +
      `"above idle" first takes off the process's own rate with every stream open and nothing appended (${Number(p.idleSampleMs) / 1000} s sampled before the steps). Latency: an event's due time at the producer to its arrival at a client. Everything, every Redis process included, shares the machine's 2 cores.`,
    "",
    "| topology | appends/s | delivered events/s | p50 ms | p99 ms | lost / dup / reordered | gateway CPU µs per delivered event | Redis CPU µs per append, primaries together | above idle | replicas µs per append | Redis CPU µs per delivered event, per primary |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const topology of topologies) {
    for (const rate of rates) {
      const runs = plain(topology, rate);
      if (runs.length === 0) continue;
      const bad = runs.reduce(
        (sum, s) => [sum[0]! + s.step.lost, sum[1]! + s.step.duplicates, sum[2]! + s.step.outOfOrder],
        [0, 0, 0],
      );
      const primaries = runs[0]!.nodes.filter((n) => n.role === "primary").map((n) => n.label);
      const perPrimary = primaries
        .map(
          (label) =>
            `${label}: ${rounds(
              runs.map((s) => s.nodes.find((n) => n.label === label)?.cpuMicrosPerDelivered ?? null),
              2,
            )}`,
        )
        .join("; ");
      out.push(
        `| ${topology} | ${rate} | ${rounds(
          runs.map((s) => s.step.delivered),
          0,
        )} | ${rounds(runs.map((s) => s.step.latency.p50))} | ${rounds(runs.map((s) => s.step.latency.p99))} | ${bad.join(" / ")} | ${rounds(
          runs.map((s) => s.gatewayMicrosPerDelivered),
        )} | ${rounds(runs.map((s) => primariesPerAppend(s, false)))} | ${rounds(
          runs.map((s) => primariesPerAppend(s, true)),
        )} | ${rounds(runs.map(replicasPerAppend))} | ${perPrimary} |`,
      );
    }
  }

  out.push(
    "",
    "Per Redis process, at each rate (CPU in % of one core over the step; µs per append of its shard; commands per append; WAITs per append):",
    "",
    "| topology | appends/s | process | sessions | idle % | CPU % | µs per append | above idle | commands per append | WAITs per append |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const topology of topologies) {
    for (const rate of rates) {
      const runs = plain(topology, rate);
      const labels = runs[0]?.nodes.map((n) => n.label) ?? [];
      for (const label of labels) {
        const nodes = runs.map((s) => s.nodes.find((n) => n.label === label) ?? null);
        const first = nodes[0]!;
        const sessions = first.shard === null ? "–" : String(runs[0]!.sessionsPerShard[first.shard] ?? "–");
        const sentinel = first.role === "sentinel";
        out.push(
          `| ${topology} | ${rate} | ${label} | ${sessions} | ${rounds(
            nodes.map((n) => n?.idleCpuPercent ?? null),
            2,
          )} | ${rounds(
            nodes.map((n) => n?.cpuPercent ?? null),
          )} | ${sentinel ? "–" : rounds(nodes.map((n) => n?.cpuMicrosPerAppend ?? null))} | ${
            sentinel ? "–" : rounds(nodes.map((n) => n?.cpuMicrosPerAppendAboveIdle ?? null))
          } | ${
            sentinel
              ? "–"
              : rounds(
                  nodes.map((n) => n?.commandsPerAppend ?? null),
                  2,
                )
          } | ${
            sentinel
              ? "–"
              : rounds(
                  nodes.map((n) => n?.waitsPerAppend ?? null),
                  3,
                )
          } |`,
        );
      }
    }
  }

  // What one more append per second adds: the slope between the two highest rates, which leaves out
  // what every rate pays alike (idle work, and the per-wakeup cost that batching spreads at higher rates).
  if (rates.length >= 2) {
    const [mid, high] = [rates.at(-2)!, rates.at(-1)!];
    out.push(
      "",
      `Marginal cost: the CPU one more append per second adds, from ${mid} to ${high} appends/s (the slope: CPU % at ${high} less CPU % at ${mid}, over the appends per second added, per round), and the least-squares slope over all ${rates.length} rates. The per-append figures above fall as the rate rises (at a higher rate Redis answers more commands per wakeup); the slope is what the next appends cost.`,
      "",
      `| topology | primaries together, µs per append/s, ${mid} → ${high} | over all rates | replicas together, ${mid} → ${high} | over all rates | primaries' CPU % at ${high}/s |`,
      "| --- | --- | --- | --- | --- | --- |",
    );
    const cpuOf = (s: TopologyStep, role: string) =>
      s.nodes.filter((n) => n.role === role).reduce((sum, n) => sum + n.cpuPercent, 0);
    const rateOf = (s: TopologyStep) =>
      s.nodes.filter((n) => n.role === "primary").reduce((sum, n) => sum + n.appends, 0) / s.spanSeconds;
    for (const topology of topologies) {
      const lows = plain(topology, mid);
      const highs = plain(topology, high);
      const slope = (role: string) =>
        highs.map((h) => {
          const l = lows.find((x) => x.round === h.round);
          if (!l || !h.nodes.some((n) => n.role === role)) return null;
          return (((cpuOf(h, role) - cpuOf(l, role)) / 100) * 1e6) / (rateOf(h) - rateOf(l));
        });
      const leastSquares = (role: string) =>
        highs.map((h) => {
          const points = rates
            .map((rate) => plain(topology, rate).find((x) => x.round === h.round))
            .filter((x): x is TopologyStep => x?.nodes.some((n) => n.role === role) === true)
            .map((x) => [rateOf(x), cpuOf(x, role)] as const);
          if (points.length < 2) return null;
          const mx = points.reduce((sum, [x]) => sum + x, 0) / points.length;
          const my = points.reduce((sum, [, y]) => sum + y, 0) / points.length;
          const cov = points.reduce((sum, [x, y]) => sum + (x - mx) * (y - my), 0);
          const vx = points.reduce((sum, [x]) => sum + (x - mx) ** 2, 0);
          return vx > 0 ? ((cov / vx) * 1e6) / 100 : null;
        });
      out.push(
        `| ${topology} | ${rounds(slope("primary"))} | ${rounds(leastSquares("primary"))} | ${rounds(slope("replica"))} | ${rounds(leastSquares("replica"))} | ${rounds(highs.map((h) => cpuOf(h, "primary")))} |`,
      );
    }
  }

  const extra = steps.filter((s) => s.extraInstances > 0);
  if (extra.length > 0) {
    const count = extra[0]!.extraInstances;
    const rate = extra[0]!.rate;
    out.push(
      "",
      `More instances: one more step at ${rate} appends/s with ${count} more subscriber connections per primary, each subscribed to every session's notice channel (\`SSUBSCRIBE\` on its shard, on the cluster) as ${count} more gateway instances whose clients read every session would be; their notices are counted. ` +
        "The cost of one notice to one more instance is the primaries' CPU per append above idle, with them less without them (same round, same rate), over their number.",
      "",
      "| topology | primaries µs per append above idle, without → with | µs per notice per more instance | notices received / expected |",
      "| --- | --- | --- | --- |",
    );
    for (const topology of topologies) {
      const withExtra = extra.filter((s) => s.topology === topology).sort((a, b) => a.round - b.round);
      const pairs = withExtra.map((s) => {
        const base = plain(topology, s.rate).find((b) => b.round === s.round);
        const without = base ? primariesPerAppend(base, true) : null;
        const withThem = primariesPerAppend(s, true);
        const appends = s.nodes.filter((n) => n.role === "primary").reduce((sum, n) => sum + n.appends, 0);
        return {
          without,
          withThem,
          perNotice: without !== null && withThem !== null ? (withThem - without) / s.extraInstances : null,
          notices: `${s.extraNotices.toLocaleString("en-US")} / ${(appends * s.extraInstances).toLocaleString("en-US")}`,
        };
      });
      out.push(
        `| ${topology} | ${pairs.map((x) => `${fmt(x.without)} → ${fmt(x.withThem)}`).join(", ")} | ${rounds(
          pairs.map((x) => x.perNotice),
          2,
        )} | ${pairs.map((x) => x.notices).join(", ")} |`,
      );
    }
  }
  return out.join("\n");
}
