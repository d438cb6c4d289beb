/**
 * End to end: the operator's kit holds against real metrics. Four gateway processes, the system
 * Prometheus scraping them every second with the repo's rule files, and a small workload that touches
 * what the dashboard shows:
 *  - two gateways on one Redis: runs done and cancelled, an outside producer, multiplexed, session and
 *    agent streams, a resume, deliveries across instances;
 *  - one on the test Redis Cluster with durable acknowledgements (REDIS_WAIT_REPLICAS=1, the cluster's
 *    replicas confirm): connections per shard, cluster events, confirmed WAITs; with a short retention
 *    and catch-up batch, resumes past trimmed history (a gap on the lifecycle feed; a snapshot and
 *    merged deltas on a session); a subscription set followed;
 *  - one asking a replica-less Redis for a replica (REDIS_WAIT_REPLICAS=1): WAITs answering short.
 * Then, read out of the files themselves:
 *  - EVERY query of EVERY panel of deploy/grafana/dashboards/*.json (variables substituted as Grafana
 *    does: `$__rate_interval` → 1m, `$job` → its default, `$instance` → All) parses and returns at
 *    least one finite sample from Prometheus's HTTP API, and the instance variable lists every instance;
 *  - EVERY sse_* metric the gateways export is read by some panel, or listed in OFF_DASHBOARD below
 *    with the reason: a new metric without a panel fails here;
 *  - EVERY alert of prometheus/alerts.yml is loaded and healthy, its expression evaluates, every series
 *    it reads exists, every metric it names is on the dashboard, and its runbook section exists; and
 *    prometheus/tests/alerts.test.yml (promtool test rules) passes and shows every alert firing and silent.
 * A metric renamed in src/metrics.ts without the panel or alert that reads it fails here.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { openSse, postJson, randomPrefix, request, type SseConnection } from "../helpers/index.js";
import { prometheusBinary, promtoolBinary } from "./helpers/binaries.js";
import { e2eGatewayEnv, ensureRunning, freePorts, GatewayInstance, logTails } from "./helpers/cluster.js";
import {
  type DashboardQuery,
  labelValuesSelector,
  panelsOf,
  queriesOf,
  queryVariables,
  REPO_ROOT,
  readDashboards,
  substitute,
  variableValues,
} from "./helpers/grafana.js";
import { waitUntil } from "./helpers/process.js";
import { type PrometheusHandle, type PrometheusSample, startPrometheus } from "./helpers/prometheus.js";
import { metricFamily, metricNames, rangeWindows, seriesSelectors } from "./helpers/promql.js";
import { setupSuite } from "./helpers/setup.js";

/** What the test puts for Grafana's `$__rate_interval` (4 × a 15 s scrape in production; plenty at 1 s). */
const RATE_INTERVAL = "1m";
const DATA_TIMEOUT_MS = 45_000;
const ALERTS_FILE = join(REPO_ROOT, "prometheus/alerts.yml");
const ALERTS_TEST_FILE = "prometheus/tests/alerts.test.yml";
const RUNBOOK_FILE = join(REPO_ROOT, "docs/operations.md");
/** Panels name no datasource: Grafana puts the one picked in the dashboard's drop-down. */
const DATASOURCE_UID = `\${datasource}`;

const dashboards = readDashboards();

/**
 * The gateway's metrics (sse_*) deliberately on no panel, each with the reason. Every other one the
 * gateways export must be read by a panel: a metric added to src/metrics.ts needs a panel, or a line
 * here saying why not. Empty today: every sse_* metric has its panel.
 */
const OFF_DASHBOARD: ReadonlyMap<string, string> = new Map<string, string>([]);

/** A sample Grafana would draw: a number, not NaN (a quantile of no observations) or ±Inf. */
const finite = (sample: PrometheusSample) => Number.isFinite(Number(sample.value[1]));

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map((match) =>
      match[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, "")
        .replace(/ /g, "-"),
    ),
  );
}

describe("e2e: every dashboard panel and every alert against real Prometheus", () => {
  /** Every gateway Prometheus scrapes. */
  let instances: GatewayInstance[] = [];
  /** Two on one Redis, reading from each other. */
  let pair: GatewayInstance[] = [];
  let clustered: GatewayInstance | undefined;
  let unconfirmed: GatewayInstance | undefined;
  let prometheus: PrometheusHandle | undefined;
  const streams: SseConnection[] = [];

  const stack = setupSuite(async () => {
    prometheusBinary();
    const [portA, portB, portCluster, portUnconfirmed] = (await freePorts(4)) as [
      number,
      number,
      number,
      number,
    ];
    const onRedis = e2eGatewayEnv(inject("redisUrl"), randomPrefix());
    pair = [new GatewayInstance("gw-a", portA, onRedis), new GatewayInstance("gw-b", portB, onRedis)];
    // On the Redis Cluster, appends confirmed by each shard's replica. A retention of 10 events and a
    // catch-up batch of 5 let a small workload resume past trimmed history and have deltas merged.
    const { REDIS_URL: _none, ...clusterEnv } = e2eGatewayEnv("", randomPrefix());
    clustered = new GatewayInstance("gw-cluster", portCluster, {
      ...clusterEnv,
      REDIS_CLUSTER_NODES: inject("redisClusterNodes"),
      REDIS_WAIT_REPLICAS: "1",
      MAX_EVENTS_PER_SESSION: "10",
      LIFECYCLE_MAX_EVENTS: "10",
      CATCH_UP_BATCH: "5",
    });
    // One replica asked of a Redis that has none: every WAIT comes back short, every append gets 503.
    unconfirmed = new GatewayInstance("gw-unconfirmed", portUnconfirmed, {
      ...e2eGatewayEnv(inject("redisUrl"), randomPrefix()),
      REDIS_WAIT_REPLICAS: "1",
      REDIS_WAIT_TIMEOUT_MS: "100",
    });
    instances = [...pair, clustered, unconfirmed];
    await ensureRunning(instances);
    const prom = await startPrometheus({ targets: instances.map((instance) => instance.address) });
    prometheus = prom;
    // The workload starts only once every instance has been scraped: a counter must have a sample
    // from before the workload for rate() to see it move.
    await waitUntil(
      async () => (await prom.query(`sse_ready{job="${prom.job}"} == 1`)).length === instances.length,
      30_000,
      () => `not every instance scraped as ready:\n${prom.logs().slice(-1_500)}`,
      250,
    );
  }, 180_000);

  afterAll(async () => {
    for (const stream of streams) stream.close();
    await Promise.all(instances.map((instance) => instance.stop().catch(() => {})));
    await prometheus?.stop().catch(() => {});
  }, 60_000);

  /** On each instance of the pair, read from the OTHER one, so deliveries cross Redis as in production. */
  async function workload(): Promise<void> {
    const tag = `grafana-${Date.now().toString(36)}`;
    await Promise.all(
      pair.map(async (instance, index) => {
        const other = pair[(index + 1) % pair.length]!;
        const runId = `${tag}-run-${index}`;
        // Multiplexed readers open BEFORE the run, so its events reach them live: @sessions (the
        // lifecycle feed) stays open; the reader of the run records its last cursor.
        const feed = await openSse(`${other.url}/api/v1/stream?sessions=@sessions`);
        streams.push(feed);
        const reader = await openSse(`${other.url}/api/v1/stream?sessions=${runId},@sessions`);
        streams.push(reader);
        expect([feed.status, reader.status]).toEqual([200, 200]);

        const run = await postJson(`${instance.url}/api/v1/sessions`, {
          id: runId,
          message: "grafana [tokens=30]",
        });
        expect(run.status, run.text).toBe(201);
        await reader.waitForEvent(`${runId}:done`, 20_000);

        // A single-session stream (kind session) replays the run and closes after `done`.
        const single = await openSse(`${instance.url}/api/v1/sessions/${runId}/stream`);
        streams.push(single);
        await single.waitForEvent("done", 10_000);

        // The reader resumes (Last-Event-ID: a cursor of the same session list) on the other
        // instance, from its first token: resumes_total and replayed events.
        const resumed = await openSse(`${instance.url}/api/v1/stream?sessions=${runId},@sessions`, {
          lastEventId: reader.events.find((event) => event.event === `${runId}:token`)?.id,
        });
        streams.push(resumed);
        await resumed.waitForEvent(`${runId}:done`, 10_000);
        resumed.close();

        // The agent route streams a run on its own response (kind agent).
        const agent = await request("POST", `${instance.url}/api/v1/agent/stream`, {
          body: { message: "grafana agent [tokens=10]" },
        });
        expect(agent.status).toBe(200);
        expect(agent.text).toContain("event: done");

        // An outside producer appends a whole session.
        const produced = await postJson(`${instance.url}/api/v1/sessions/${tag}-producer-${index}/events`, {
          events: [
            { type: "start", data: { model: "producer", createdAt: new Date().toISOString() } },
            { type: "token", data: { content: "hello" } },
            {
              type: "done",
              data: { session_id: `${tag}-producer-${index}`, total_tokens: 1, finish_reason: "stop" },
            },
          ],
        });
        expect(produced.status, produced.text).toBe(202);

        // A run cancelled mid-stream.
        const long = await postJson(`${instance.url}/api/v1/sessions`, { message: "grafana [tokens=2000]" });
        expect(long.status, long.text).toBe(201);
        const cancel = await postJson(`${instance.url}/api/v1/sessions/${long.body.id}/cancel`, {});
        expect(cancel.status, cancel.text).toBe(202);
      }),
    );
  }

  /** Resolves once Prometheus holds a series for `selector`. */
  async function scraped(selector: string): Promise<void> {
    const prom = prometheus!;
    await waitUntil(
      async () => (await prom.query(selector)).length > 0,
      15_000,
      () => `Prometheus has no ${selector}\n${logTails(instances)}`,
      250,
    );
  }

  /**
   * On the cluster gateway (durable acknowledgements; retention 10 events a session and 10 on the
   * lifecycle feed; catch-up batch 5): a run read live, with the lifecycle feed; the feed resumed from
   * that run's creation after 24 more entries trimmed it (a gap: the feed keeps no snapshot); a session
   * resumed from before its compaction (a snapshot, then a catch-up batch whose deltas are merged); a
   * subscription set followed.
   */
  async function clusterWorkload(tag: string): Promise<void> {
    const gateway = clustered!;
    const runId = `${tag}-cluster-run`;
    const reader = await openSse(`${gateway.url}/api/v1/stream?sessions=${runId},@sessions`);
    streams.push(reader);
    const run = await postJson(`${gateway.url}/api/v1/sessions`, {
      id: runId,
      message: "grafana [tokens=20]",
    });
    expect(run.status, run.text).toBe(201);
    await reader.waitForEvent(`${runId}:done`, 20_000);
    const createdAt = (await reader.waitForEvent("@sessions:created", 10_000)).id;
    reader.close();
    // The gateway exports a labelled series from its first use: rate() sees only what comes after a
    // first scrape of it (the WAITs below; the second gap further down).
    await scraped(`sse_redis_wait_seconds_count{outcome="confirmed", instance="${gateway.address}"}`);

    // A producer's session, in two appends: its first 4 events, then 31 more, which compaction folds
    // into a snapshot down to the last 10. Each session adds `created` and `ended` to the feed.
    const tokens = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) => ({ type: "token", data: { content: `t${from + i} ` } }));
    const compacted = `${tag}-compacted`;
    const head = await postJson(`${gateway.url}/api/v1/sessions/${compacted}/events`, {
      events: [
        { type: "start", data: { model: "producer", createdAt: new Date().toISOString() } },
        ...tokens(0, 3),
      ],
    });
    expect(head.status, head.text).toBe(202);
    const early = await openSse(`${gateway.url}/api/v1/sessions/${compacted}/stream`);
    streams.push(early);
    await early.waitFor((events) => events.filter((event) => event.event === "token").length === 3, 10_000);
    const firstToken = early.events.find((event) => event.event === "token")?.id;
    early.close();
    expect(firstToken, "the first token's id").toBeDefined();
    const rest = await postJson(`${gateway.url}/api/v1/sessions/${compacted}/events`, {
      events: [
        ...tokens(3, 30),
        { type: "done", data: { session_id: compacted, total_tokens: 33, finish_reason: "stop" } },
      ],
    });
    expect(rest.status, rest.text).toBe(202);
    const resumed = await openSse(`${gateway.url}/api/v1/sessions/${compacted}/stream`, {
      lastEventId: firstToken,
    });
    streams.push(resumed);
    await resumed.waitForEvent("snapshot", 10_000);
    await resumed.waitForEvent("done", 10_000);

    // 11 more sessions: 22 more feed entries, so the run's `created` is trimmed from the feed.
    for (let i = 0; i < 11; i++) {
      const id = `${tag}-feed-${i}`;
      const produced = await postJson(`${gateway.url}/api/v1/sessions/${id}/events`, {
        events: [
          { type: "start", data: { model: "producer", createdAt: new Date().toISOString() } },
          { type: "done", data: { session_id: id, total_tokens: 0, finish_reason: "stop" } },
        ],
      });
      expect(produced.status, produced.text).toBe(202);
    }
    for (const _ of [1, 2]) {
      const feed = await openSse(`${gateway.url}/api/v1/stream?sessions=${runId},@sessions`, {
        lastEventId: createdAt,
      });
      streams.push(feed);
      await feed.waitForEvent("@sessions:gap", 10_000);
      feed.close();
      await scraped(`sse_gaps_total{reason="trimmed", instance="${gateway.address}"}`);
    }

    const created = await postJson(`${gateway.url}/api/v1/subscriptions`, { sessions: [runId] });
    expect(created.status, created.text).toBe(201);
    const follower = await openSse(`${gateway.url}/api/v1/stream?subscription=${created.body.id as string}`);
    streams.push(follower); // stays open: sse_subscription_sets_open is 1 while it does
    await follower.waitForEvent("connected", 10_000);
  }

  /** On the gateway whose Redis has no replica: an append's WAIT comes back short, and it gets 503. */
  async function unconfirmedWorkload(tag: string): Promise<void> {
    const answer = await postJson(`${unconfirmed!.url}/api/v1/sessions/${tag}-unconfirmed/events`, {
      events: [{ type: "start", data: { model: "producer", createdAt: new Date().toISOString() } }],
    });
    expect(answer.status, answer.text).toBe(503);
    expect(answer.text).toContain("REDIS_WAIT_REPLICAS");
  }

  it("every panel query of the dashboard returns data for the 4 instances", async () => {
    stack.assertReady();
    const prom = prometheus!;
    const tag = `grafana-${Date.now().toString(36)}`;
    await Promise.all([workload(), clusterWorkload(tag), unconfirmedWorkload(tag)]);

    const queries: Array<DashboardQuery & { promql: string }> = dashboards.flatMap(({ dashboard }) => {
      const values = variableValues(dashboard, RATE_INTERVAL);
      return queriesOf(dashboard).map((query) => ({ ...query, promql: substitute(query.raw, values) }));
    });
    expect(queries.length).toBeGreaterThan(0);

    const outcome = new Map<string, string>();
    const missing = async (): Promise<string[]> => {
      const failing: string[] = [];
      for (const query of queries) {
        let verdict: string;
        try {
          const samples = await prom.query(query.promql);
          verdict =
            samples.length === 0
              ? "empty result"
              : samples.some(finite)
                ? "ok"
                : `no finite sample: ${JSON.stringify(samples.map((sample) => sample.value[1]))}`;
        } catch (error) {
          verdict = (error as Error).message;
        }
        outcome.set(query.where, verdict);
        if (verdict !== "ok") failing.push(`${query.where}: ${verdict}\n    ${query.promql}`);
      }
      return failing;
    };
    let failing: string[] = [];
    await waitUntil(
      async () => {
        failing = await missing();
        return failing.length === 0;
      },
      DATA_TIMEOUT_MS,
      () =>
        `${failing.length} of ${queries.length} panel queries return no data:\n${failing.join("\n")}\n${logTails(instances)}`,
      1_000,
    );

    // The instance drop-down (label_values(up{job="$job"}, instance)) lists every instance.
    for (const { dashboard } of dashboards) {
      const values = variableValues(dashboard, RATE_INTERVAL);
      for (const variable of queryVariables(dashboard)) {
        const { selector, label } = labelValuesSelector(substitute(variable.query, values));
        const series = await prom.series(selector);
        const listed = [...new Set(series.map((labels) => labels[label]))].sort();
        expect(listed, `${dashboard.uid} variable ${variable.name}`).toEqual(
          instances.map((instance) => instance.address).sort(),
        );
      }
    }
    const panels = dashboards.flatMap(({ dashboard }) => panelsOf(dashboard));

    // The reverse: every sse_* metric a gateway exports is read by a panel, or deliberately left off.
    const onPanels = new Set(queries.flatMap((query) => metricNames(query.promql).map(metricFamily)));
    const exported = new Set<string>();
    for (const instance of instances) {
      const res = await request("GET", `${instance.url}/metrics`, { headers: { accept: "text/plain" } });
      expect(res.status, `${instance.name} /metrics`).toBe(200);
      for (const match of res.text.matchAll(/^# TYPE (sse_\w+) /gm)) exported.add(match[1]!);
    }
    expect(exported.size, "sse_* metrics exported").toBeGreaterThan(0);
    const withoutPanel = [...exported].filter((name) => !onPanels.has(name) && !OFF_DASHBOARD.has(name));
    expect(withoutPanel, "exported, on no panel and not in OFF_DASHBOARD").toEqual([]);
    for (const name of OFF_DASHBOARD.keys()) {
      expect(exported.has(name), `OFF_DASHBOARD names ${name}, which no gateway exports`).toBe(true);
      expect(onPanels.has(name), `OFF_DASHBOARD names ${name}, which a panel reads`).toBe(false);
    }
    console.log(
      `grafana: ${panels.length} panels, ${queries.length} queries (${outcome.size} evaluated), every one returning data`,
    );
  });

  it("every alert is loaded and healthy, evaluates, reads only series that exist, and is on the dashboard and in the runbook", async () => {
    stack.assertReady();
    const prom = prometheus!;
    const alertsText = readFileSync(ALERTS_FILE, "utf8");
    const declared = [...alertsText.matchAll(/^\s*-\s*alert:\s*["']?([\w-]+)/gm)].map((match) => match[1]!);
    expect(declared.length).toBeGreaterThan(0);

    // Loaded by Prometheus from prometheus.yml's rule_files, and evaluated at least once without error.
    let loaded: Array<{
      name: string;
      query: string;
      health: string;
      lastError?: string;
      annotations?: Record<string, string>;
    }> = [];
    await waitUntil(
      async () => {
        loaded = (await prom.rules())
          .flatMap((group) => group.rules)
          .filter((rule) => rule.type === "alerting");
        return loaded.length === declared.length && loaded.every((rule) => rule.health === "ok");
      },
      20_000,
      () =>
        `rules: ${JSON.stringify(loaded.map(({ name, health, lastError }) => ({ name, health, lastError })))}`,
      500,
    );
    expect(loaded.map((rule) => rule.name).sort()).toEqual([...declared].sort());

    const dashboardMetrics = new Set(
      dashboards.flatMap(({ dashboard }) => {
        const values = variableValues(dashboard, RATE_INTERVAL);
        return queriesOf(dashboard).flatMap((query) =>
          metricNames(substitute(query.raw, values)).map(metricFamily),
        );
      }),
    );
    const runbookAnchors = anchorsOf(readFileSync(RUNBOOK_FILE, "utf8"));
    const problems: string[] = [];
    const selectorsChecked = new Set<string>();
    for (const rule of loaded) {
      try {
        await prom.query(rule.query); // parses and evaluates; empty unless the alert would fire
      } catch (error) {
        problems.push(`${rule.name}: does not evaluate: ${(error as Error).message}`);
        continue;
      }
      for (const selector of seriesSelectors(rule.query)) {
        selectorsChecked.add(selector);
        const samples = await prom.query(selector);
        if (samples.length === 0) problems.push(`${rule.name}: ${selector} has no series`);
      }
      for (const metric of metricNames(rule.query)) {
        if (!dashboardMetrics.has(metricFamily(metric)))
          problems.push(`${rule.name}: ${metric} is on no dashboard panel`);
      }
      const runbook = rule.annotations?.runbook ?? "";
      const anchor = /^docs\/operations\.md#([\w-]+)$/.exec(runbook)?.[1];
      if (!anchor || !runbookAnchors.has(anchor)) {
        problems.push(
          `${rule.name}: runbook annotation ${JSON.stringify(runbook)} names no section of docs/operations.md`,
        );
      }
    }
    expect(problems, `${problems.join("\n")}\n${logTails(instances)}`).toEqual([]);
    console.log(
      `alerts: ${loaded.length} rules healthy; ${selectorsChecked.size} series selectors they read all exist: ${[...selectorsChecked].join(", ")}`,
    );
  });
});

describe("the deploy files", () => {
  const read = (path: string) => readFileSync(join(REPO_ROOT, path), "utf8");

  it("compose provisions Grafana from deploy/grafana: the datasource the dashboard offers, the folder it is in", () => {
    const compose = read("docker-compose.yml");
    expect(compose).toContain("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro");
    const dashboardsMount = /\.\/deploy\/grafana\/dashboards:(\S+):ro/.exec(compose)?.[1];
    expect(dashboardsMount, "docker-compose.yml mounts deploy/grafana/dashboards").toBeDefined();
    const provider = read("deploy/grafana/provisioning/dashboards/sse-gateway.yml");
    expect(/^\s*path:\s*(\S+)\s*$/m.exec(provider)?.[1]).toBe(dashboardsMount);
    const datasource = read("deploy/grafana/provisioning/datasources/prometheus.yml");
    expect(datasource).toMatch(/^\s*type:\s*prometheus\s*$/m);
    expect(datasource).toMatch(/^\s*url:\s*http:\/\/prometheus:9090\s*$/m);
    expect(/^\s{2}grafana:\n(?:\s{4}.*\n)*?\s{4}depends_on:\n\s{6}- prometheus$/m.test(compose)).toBe(true);
  });

  it("promtool test rules: every alert fires on the series of its test, and stays silent on healthy ones", () => {
    const run = spawnSync(promtoolBinary(), ["test", "rules", ALERTS_TEST_FILE], {
      cwd: REPO_ROOT,
      encoding: "utf8",
    });
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
    // Which alerts the file shows firing (an alert_rule_test with exp_alerts items) and silent
    // (exp_alerts: []): every alert of alerts.yml must be shown both ways.
    const firing = new Set<string>();
    const silent = new Set<string>();
    for (const match of read(ALERTS_TEST_FILE).matchAll(/alertname:\s*(\w+)\s*\n\s*exp_alerts:(.*)\n(.*)/g)) {
      if (match[2]!.trim() === "[]") silent.add(match[1]!);
      else if (/^\s*-\s*exp_labels:/.test(match[3]!)) firing.add(match[1]!);
    }
    const alerts = [...read("prometheus/alerts.yml").matchAll(/^\s*-\s*alert:\s*([\w-]+)/gm)].map(
      (m) => m[1]!,
    );
    expect(
      alerts.filter((alert) => !firing.has(alert)),
      "alerts never shown firing",
    ).toEqual([]);
    expect(
      alerts.filter((alert) => !silent.has(alert)),
      "alerts never shown silent",
    ).toEqual([]);
    expect(
      [...firing, ...silent].filter((alert) => !alerts.includes(alert)),
      "tests of no alert",
    ).toEqual([]);
  });

  it("alerts.yml and the runbook name the same alerts", () => {
    const alerts = [...read("prometheus/alerts.yml").matchAll(/^\s*-\s*alert:\s*([\w-]+)/gm)].map(
      (m) => m[1]!,
    );
    const anchors = anchorsOf(read("docs/operations.md"));
    expect(alerts.filter((alert) => !anchors.has(alert.toLowerCase()))).toEqual([]);
  });

  it("the dashboards ask for their datasource through the datasource variable, and every rate spans $__rate_interval", () => {
    expect(dashboards.length).toBeGreaterThan(0);
    for (const { file, dashboard } of dashboards) {
      const variable = dashboard.templating.list.find((v) => v.type === "datasource");
      expect(variable, `${file}: a datasource variable`).toMatchObject({
        name: "datasource",
        query: "prometheus",
      });
      const ids = panelsOf(dashboard).map((panel) => panel.id);
      expect(new Set(ids).size, `${file}: panel ids are unique`).toBe(ids.length);
      for (const panel of panelsOf(dashboard)) {
        expect(panel.datasource?.uid, `${file}: ${panel.title}`).toBe(DATASOURCE_UID);
        expect(panel.targets?.length ?? 0, `${file}: ${panel.title} has queries`).toBeGreaterThan(0);
        for (const target of panel.targets ?? []) {
          expect(target.datasource?.uid, `${panel.title} ${target.refId}`).toBe(DATASOURCE_UID);
          for (const window of rangeWindows(target.expr)) {
            expect(window, `${panel.title} ${target.refId}: ${target.expr}`).toBe("$__rate_interval");
          }
        }
      }
    }
  });
});
