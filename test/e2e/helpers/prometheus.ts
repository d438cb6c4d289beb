/**
 * The system Prometheus (Debian package) scraping gateway instances with a config DERIVED from the
 * repo's prometheus.yml (same job name, metrics path, external labels and rule files), with its
 * DNS discovery of the compose service replaced by static loopback targets and a 1 s interval.
 * Plus `promtool check metrics` on an exposition text.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../helpers/index.js";
import { prometheusBinary, promtoolBinary } from "./binaries.js";
import { httpGet, spawnManaged, waitUntil } from "./process.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 3;
const LOG_TAIL_CHARS = 3_000;

export interface PrometheusSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PrometheusHandle {
  readonly url: string;
  readonly pid: number;
  /** The job name taken from prometheus.yml. */
  readonly job: string;
  /** GET /api/v1/query; throws unless the API answers `success` with a vector. */
  query(promql: string): Promise<PrometheusSample[]>;
  /** GET /api/v1/series?match[]=…: the label sets of the series a selector matches now. */
  series(selector: string): Promise<Array<Record<string, string>>>;
  /** GET /api/v1/rules: the rule groups loaded from rule_files, as Prometheus parsed them. */
  rules(): Promise<PrometheusRuleGroup[]>;
  logs(): string;
  stop(): Promise<void>;
}

export interface PrometheusRule {
  type: "alerting" | "recording";
  name: string;
  /** The expression, as Prometheus formats it. */
  query: string;
  health: string;
  lastError?: string;
  lastEvaluation?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface PrometheusRuleGroup {
  name: string;
  file: string;
  rules: PrometheusRule[];
}

/** GET an API path; throws unless Prometheus answers `success`. */
async function apiData<T>(url: string, what: string): Promise<T> {
  const res = await httpGet(url, 5_000);
  let body: { status?: string; data?: T; error?: string };
  try {
    body = JSON.parse(res.text);
  } catch {
    throw new Error(`prometheus ${what}: status ${res.status}: ${res.text.slice(0, 300)}`);
  }
  if (body.status !== "success" || body.data === undefined) {
    throw new Error(`prometheus ${what}: ${res.text.slice(0, 300)}`);
  }
  return body.data;
}

interface DerivedConfig {
  job: string;
  metricsPath: string;
  externalLabels: Record<string, string>;
  ruleFiles: string[];
}

/**
 * The parts of prometheus.yml that matter here, read with patterns (no YAML library in the project):
 * a missing part fails loudly, so the e2e config cannot silently drift from the real one.
 */
export function deriveFromPrometheusYml(text: string): DerivedConfig {
  const need = (pattern: RegExp, what: string): string => {
    const match = pattern.exec(text);
    if (!match?.[1]) throw new Error(`prometheus.yml: cannot find ${what} (${pattern})`);
    return match[1];
  };
  const job = need(/^\s*-\s*job_name:\s*["']?([\w.-]+)["']?\s*$/m, "the first scrape job's job_name");
  const jobBlock = text.slice(text.indexOf(job));
  const metricsPath = /^\s*metrics_path:\s*(\S+)/m.exec(jobBlock)?.[1] ?? "/metrics";
  const externalLabels: Record<string, string> = {};
  const labelsBlock = /^\s*external_labels:\s*\n((?:\s{4,}\S.*\n)+)/m.exec(text)?.[1] ?? "";
  for (const line of labelsBlock.split("\n")) {
    const label = /^\s*([A-Za-z_]\w*):\s*["']?([^"'#]*?)["']?\s*$/.exec(line);
    if (label?.[1] && label[2] !== undefined) externalLabels[label[1]] = label[2];
  }
  const rulesBlock = /^rule_files:\s*\n((?:\s+-\s+.*\n)+)/m.exec(text)?.[1] ?? "";
  const ruleFiles = rulesBlock
    .split("\n")
    .map((line) => /^\s+-\s+["']?([^"'\s]+)["']?/.exec(line)?.[1])
    .filter((file): file is string => file !== undefined)
    // Relative to prometheus.yml, which sits at the repo root.
    .map((file) => (file.startsWith("/") ? file : join(REPO_ROOT, file)));
  return { job, metricsPath, externalLabels, ruleFiles };
}

export async function startPrometheus(opts: {
  targets: string[];
  scrapeInterval?: string;
}): Promise<PrometheusHandle> {
  const binary = prometheusBinary();
  const derived = deriveFromPrometheusYml(readFileSync(join(REPO_ROOT, "prometheus.yml"), "utf8"));
  const interval = opts.scrapeInterval ?? "1s";
  const dir = mkdtempSync(join(tmpdir(), "sse-e2e-prometheus-"));
  const configPath = join(dir, "prometheus.yml");
  // JSON is YAML: no serializer needed.
  const config = {
    global: {
      scrape_interval: interval,
      evaluation_interval: interval,
      external_labels: derived.externalLabels,
    },
    rule_files: derived.ruleFiles,
    scrape_configs: [
      {
        job_name: derived.job,
        metrics_path: derived.metricsPath,
        scrape_interval: interval,
        scrape_timeout: interval,
        static_configs: [{ targets: opts.targets }],
      },
    ],
  };
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);

  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = spawnManaged(binary, [
      `--config.file=${configPath}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ]);
    try {
      await waitUntil(
        async () => {
          if (proc.hasExited()) throw new Error("exited");
          return (await httpGet(`${url}/-/ready`, 1_000)).status === 200;
        },
        READY_TIMEOUT_MS,
        () => "not ready",
      );
    } catch {
      await proc.stop(["SIGTERM", "SIGKILL"], 3_000);
      const why = proc.output().slice(-LOG_TAIL_CHARS);
      lastError = new Error(`prometheus did not become ready on ${url} with ${configPath}:\n${why}`);
      if (/address already in use/i.test(why)) continue;
      break;
    }
    return {
      url,
      pid: proc.pid,
      job: derived.job,
      async query(promql) {
        const res = await httpGet(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`, 5_000);
        let body: {
          status?: string;
          data?: { resultType?: string; result?: PrometheusSample[] };
          error?: string;
        };
        try {
          body = JSON.parse(res.text);
        } catch {
          throw new Error(`prometheus query ${promql}: status ${res.status}: ${res.text.slice(0, 300)}`);
        }
        if (body.status !== "success" || body.data?.resultType !== "vector" || !body.data.result) {
          throw new Error(`prometheus query ${promql}: ${res.text.slice(0, 300)}`);
        }
        return body.data.result;
      },
      async series(selector) {
        const since = Math.floor(Date.now() / 1000) - 300;
        return apiData(
          `${url}/api/v1/series?match[]=${encodeURIComponent(selector)}&start=${since}`,
          `series ${selector}`,
        );
      },
      async rules() {
        const data = await apiData<{ groups: PrometheusRuleGroup[] }>(`${url}/api/v1/rules`, "rules");
        return data.groups;
      },
      logs: () => proc.output(),
      async stop() {
        await proc.stop(["SIGTERM", "SIGKILL"], 5_000);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error("prometheus did not start");
}

/** `promtool check metrics` with the exposition text on stdin: exit code and everything it printed. */
export function promtoolCheckMetrics(
  text: string,
  timeoutMs = 20_000,
): Promise<{ code: number | null; output: string }> {
  const binary = promtoolBinary();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`promtool check metrics did not finish within ${timeoutMs} ms: ${output}`));
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
    child.stdin.on("error", () => {
      // promtool may exit before reading everything; the exit code says what went wrong.
    });
    child.stdin.end(text);
  });
}
