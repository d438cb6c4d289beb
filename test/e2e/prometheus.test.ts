/**
 * End to end: the system Prometheus scrapes three gateway processes with a config derived from the
 * repo's prometheus.yml (static loopback targets instead of the compose DNS name, 1 s interval, the
 * same rule files), and its HTTP API returns the connection and delivered-events series of every
 * instance; `promtool check metrics` accepts each instance's /metrics text.
 */
import { afterAll, describe, expect, inject, it } from "vitest";
import { getJson, openSse, postJson, randomPrefix, type SseConnection } from "../helpers/index.js";
import { prometheusBinary, promtoolBinary } from "./helpers/binaries.js";
import {
  createInstances,
  e2eGatewayEnv,
  ensureRunning,
  type GatewayInstance,
  logTails,
} from "./helpers/cluster.js";
import { httpGet, waitUntil } from "./helpers/process.js";
import {
  type PrometheusHandle,
  type PrometheusSample,
  promtoolCheckMetrics,
  startPrometheus,
} from "./helpers/prometheus.js";
import { setupSuite } from "./helpers/setup.js";

/** instance label → value, for one metric (summed over its other labels). */
function byInstance(samples: readonly PrometheusSample[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const sample of samples) {
    const instance = sample.metric.instance ?? "";
    out.set(instance, (out.get(instance) ?? 0) + Number(sample.value[1]));
  }
  return out;
}

describe("e2e: Prometheus scrapes every gateway instance", () => {
  let instances: GatewayInstance[] = [];
  let prometheus: PrometheusHandle | undefined;
  const streams: SseConnection[] = [];

  const stack = setupSuite(async () => {
    // A clear failure (not a skip) when the Debian package is missing.
    prometheusBinary();
    promtoolBinary();
    instances = await createInstances(
      ["gw-1", "gw-2", "gw-3"],
      e2eGatewayEnv(inject("redisUrl"), randomPrefix()),
    );
    await ensureRunning(instances);
    prometheus = await startPrometheus({ targets: instances.map((instance) => instance.address) });
  }, 180_000);

  afterAll(async () => {
    for (const stream of streams) stream.close();
    await Promise.all(instances.map((instance) => instance.stop().catch(() => {})));
    await prometheus?.stop().catch(() => {});
  }, 60_000);

  it("returns sse_open_connections and sse_events_delivered_total for all 3 instances; promtool accepts /metrics", async () => {
    stack.assertReady();
    const prom = prometheus!;
    const addresses = instances.map((instance) => instance.address).sort();

    // Traffic on every instance: a run, read on a multiplexed connection that stays open (@sessions).
    for (const instance of instances) {
      const run = await postJson(`${instance.url}/api/v1/sessions`, { message: "metrics [tokens=20]" });
      expect(run.status, run.text).toBe(201);
      const stream = await openSse(`${instance.url}/api/v1/stream?sessions=@sessions,${run.body.id}`);
      streams.push(stream);
      expect(stream.status).toBe(200);
      await stream.waitForEvent(`${run.body.id}:done`, 20_000);
    }

    // Prometheus has scraped every instance since: both series, for each of the three.
    let open = new Map<string, number>();
    let delivered = new Map<string, number>();
    let up = new Map<string, number>();
    await waitUntil(
      async () => {
        open = byInstance(await prom.query("sse_open_connections"));
        delivered = byInstance(await prom.query("sse_events_delivered_total"));
        up = byInstance(await prom.query(`up{job="${prom.job}"}`));
        return addresses.every(
          (address) =>
            (open.get(address) ?? 0) >= 1 && (delivered.get(address) ?? 0) > 0 && up.get(address) === 1,
        );
      },
      30_000,
      () =>
        `open=${JSON.stringify([...open])} delivered=${JSON.stringify([...delivered])} up=${JSON.stringify([...up])}\n` +
        `--- prometheus ---\n${prom.logs().slice(-1_500)}\n${logTails(instances)}`,
      250,
    );
    expect([...open.keys()].sort()).toEqual(addresses);
    expect([...delivered.keys()].sort()).toEqual(addresses);
    const samples = await prom.query(`sse_events_delivered_total{job="${prom.job}"}`);
    expect(samples.map((sample) => sample.metric.instance).sort()).toEqual(addresses);

    // The alert rules of prometheus.yml's rule_files loaded into the real Prometheus.
    const rules = await getJson(`${prom.url}/api/v1/rules`);
    expect(rules.status).toBe(200);
    const groups = (rules.body.data.groups as Array<{ rules: unknown[] }>) ?? [];
    expect(groups.flatMap((group) => group.rules).length).toBeGreaterThan(0);

    // promtool lints the exposition format of each instance.
    for (const instance of instances) {
      const metrics = await httpGet(`${instance.url}/metrics`, 5_000);
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain("sse_open_connections");
      const check = await promtoolCheckMetrics(metrics.text);
      expect(check, `promtool check metrics on ${instance.name}:\n${check.output}`).toEqual({
        code: 0,
        output: expect.any(String),
      });
    }
  });
});
