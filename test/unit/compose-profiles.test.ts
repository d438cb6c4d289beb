/**
 * docker-compose.yml's profiles, checked without a Docker engine: each one is valid for docker-compose
 * (`config -q`), adds the services it promises beside the default stack, and hands its gateways the
 * settings that point them at its Redis topology; and prometheus.yml scrapes every gateway service.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

function compose(...args: string[]): string {
  const run = spawnSync("docker-compose", ["-f", "docker-compose.yml", ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
  });
  if (run.error)
    throw new Error(`docker-compose is not installed (.ci/run installs it): ${run.error.message}`);
  expect(run.status, run.stderr).toBe(0);
  return run.stdout;
}

/**
 * The services whose image is the gateway's, across every profile, read from `docker-compose config`
 * (services at 2 spaces, their `image:` at 4).
 */
function gatewayServices(): string[] {
  const found: string[] = [];
  let service = "";
  const config = compose("--profile", "sentinel", "--profile", "cluster", "--profile", "tls", "config");
  for (const line of config.split("\n")) {
    const name = /^ {2}([\w.-]+):$/.exec(line)?.[1];
    if (name) service = name;
    if (line === "    image: sse-gateway:latest") found.push(service);
  }
  return found.sort();
}

/** The names of prometheus.yml's gateway job's DNS discovery (a YAML block list under `names:`). */
function scrapedNames(): string[] {
  const text = readFileSync(join(REPO_ROOT, "prometheus.yml"), "utf8");
  const block = /^\s*-\s*names:\s*\n((?:\s+-\s+\S+\s*\n)+)/m.exec(text)?.[1];
  if (!block) throw new Error("prometheus.yml: no dns_sd_configs names block list");
  return block
    .split("\n")
    .map((line) => /^\s+-\s+["']?([\w.-]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined)
    .sort();
}

/**
 * The services of `profile`, read from `docker-compose config` (services at 2 spaces, their keys at 4,
 * a list's items at 4 with "- "): docker-compose 1.x lists every service in `config --services`.
 */
function servicesOf(profile: string): string[] {
  const found: string[] = [];
  let service = "";
  let inProfiles = false;
  const lines = compose("config").split("\n");
  const start = lines.indexOf("services:");
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break;
    const name = /^ {2}([\w.-]+):$/.exec(line)?.[1];
    if (name) service = name;
    if (/^ {4}\w/.test(line)) inProfiles = line === "    profiles:";
    if (inProfiles && line === `    - ${profile}`) found.push(service);
  }
  return found.sort();
}

describe("docker-compose.yml profiles", () => {
  it("every profile is valid, alone and together", () => {
    for (const profiles of [[], ["tls"], ["sentinel"], ["cluster"], ["sentinel", "cluster", "tls"]]) {
      compose(...profiles.flatMap((profile) => ["--profile", profile]), "config", "-q");
    }
  });

  it("sentinel: a primary, a replica, 3 Sentinels and gateways that find the primary through them", () => {
    expect(servicesOf("sentinel")).toEqual([
      "gateway-sentinel-a",
      "gateway-sentinel-b",
      "redis-primary",
      "redis-replica",
      "sentinel-1",
      "sentinel-2",
      "sentinel-3",
    ]);
    const config = compose("--profile", "sentinel", "config");
    expect(config).toContain("REDIS_SENTINELS: sentinel-1:26379,sentinel-2:26379,sentinel-3:26379");
    expect(config).toContain("REDIS_SENTINEL_NAME: mymaster");
    expect(config).toMatch(/--replicaof\s+- redis-primary/);
    expect(config).toContain("sentinel monitor mymaster redis-primary 6379 2");
  });

  it("cluster: 6 nodes in cluster mode, a one-shot create, and gateways with REDIS_CLUSTER_NODES", () => {
    expect(servicesOf("cluster")).toEqual([
      "gateway-cluster-a",
      "gateway-cluster-b",
      "redis-cluster-1",
      "redis-cluster-2",
      "redis-cluster-3",
      "redis-cluster-4",
      "redis-cluster-5",
      "redis-cluster-6",
      "redis-cluster-create",
    ]);
    const config = compose("--profile", "cluster", "config");
    expect(config.match(/--cluster-enabled yes/g)).toHaveLength(6);
    // A long command is folded by docker-compose's YAML writer: its words are checked, not its line.
    expect(config).toContain("redis-cli --cluster create $$nodes --cluster-replicas");
    expect(config).toContain(
      "REDIS_CLUSTER_NODES: redis-cluster-1:6379,redis-cluster-2:6379,redis-cluster-3:6379,redis-cluster-4:6379,redis-cluster-5:6379,redis-cluster-6:6379",
    );
    expect(config).toContain("condition: service_completed_successfully");
    // The default stack is untouched by either profile.
    expect(servicesOf("tls")).toEqual(["nginx-tls"]);
  });

  it("Prometheus scrapes every gateway service, those of the profiles too", () => {
    const gateways = gatewayServices();
    expect(gateways).toEqual(expect.arrayContaining(["gateway", "gateway-sentinel-a", "gateway-cluster-a"]));
    expect(scrapedNames(), "prometheus.yml dns_sd_configs names").toEqual(gateways);
  });
});
