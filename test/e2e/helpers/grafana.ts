/**
 * The Grafana dashboard of deploy/grafana/dashboards/ read as Grafana would: its panels (also those
 * inside collapsed rows), each panel's queries, and its template variables, with the substitution
 * Grafana makes before a query reaches Prometheus (`$__rate_interval`, `$job`, `${instance}`, …), so
 * that the e2e test evaluates exactly the queries the files hold.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const DASHBOARDS_DIR = join(REPO_ROOT, "deploy/grafana/dashboards");

export interface GrafanaTarget {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
}

export interface GrafanaPanel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: GrafanaTarget[];
  panels?: GrafanaPanel[];
}

export interface GrafanaVariable {
  type: string;
  name: string;
  query?: string | { query?: string };
  allValue?: string;
  includeAll?: boolean;
  current?: { value?: string | string[] };
}

export interface GrafanaDashboard {
  uid: string;
  title: string;
  panels: GrafanaPanel[];
  templating: { list: GrafanaVariable[] };
}

export interface DashboardQuery {
  /** `<dashboard uid> / <panel title> / <refId>` */
  where: string;
  panel: GrafanaPanel;
  /** As written in the file. */
  raw: string;
}

/** Every *.json under deploy/grafana/dashboards/, parsed. */
export function readDashboards(dir = DASHBOARDS_DIR): Array<{ file: string; dashboard: GrafanaDashboard }> {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".json"))
    .sort()
    .map((name) => ({
      file: join(dir, name),
      dashboard: JSON.parse(readFileSync(join(dir, name), "utf8")) as GrafanaDashboard,
    }));
}

/** Panels in layout order, rows' nested panels included; the rows themselves left out. */
export function panelsOf(dashboard: GrafanaDashboard): GrafanaPanel[] {
  const out: GrafanaPanel[] = [];
  const walk = (panels: readonly GrafanaPanel[]) => {
    for (const panel of panels) {
      if (panel.type === "row") walk(panel.panels ?? []);
      else out.push(panel);
    }
  };
  walk(dashboard.panels);
  return out;
}

export function queriesOf(dashboard: GrafanaDashboard): DashboardQuery[] {
  return panelsOf(dashboard).flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      where: `${dashboard.uid} / ${panel.title} / ${target.refId}`,
      panel,
      raw: target.expr,
    })),
  );
}

function variableQuery(variable: GrafanaVariable): string | undefined {
  return typeof variable.query === "string" ? variable.query : variable.query?.query;
}

/**
 * The value each template variable takes in the test: a textbox or constant its default, a custom
 * variable its current value, a query variable with "All" its allValue (`.+`: every instance), and
 * `$__rate_interval` the given window. A datasource variable only appears in datasource fields.
 */
export function variableValues(dashboard: GrafanaDashboard, rateInterval: string): Map<string, string> {
  const values = new Map<string, string>([["__rate_interval", rateInterval]]);
  for (const variable of dashboard.templating.list) {
    if (variable.type === "datasource") continue;
    if (variable.type === "textbox" || variable.type === "constant") {
      values.set(variable.name, variableQuery(variable) ?? "");
    } else if (variable.type === "query" && variable.includeAll && variable.allValue) {
      values.set(variable.name, variable.allValue);
    } else if (variable.type === "custom" && typeof variable.current?.value === "string") {
      values.set(variable.name, variable.current.value);
    } else {
      throw new Error(
        `variable ${variable.name} (${variable.type}): no value for the test; teach variableValues`,
      );
    }
  }
  return values;
}

/** `$name`, `${name}` and `[[name]]` replaced; an unknown variable is an error, never left in place. */
export function substitute(expr: string, values: ReadonlyMap<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (match, braced, plain, bracketed) => {
    const name = (braced ?? plain ?? bracketed) as string;
    const value = values.get(name);
    if (value === undefined) throw new Error(`unknown variable ${match} in ${JSON.stringify(expr)}`);
    return value;
  });
}

/** The series selector inside a `label_values(selector, label)` variable query. */
export function labelValuesSelector(query: string): { selector: string; label: string } {
  const match = /^\s*label_values\(\s*(.+)\s*,\s*(\w+)\s*\)\s*$/s.exec(query);
  if (!match?.[1] || !match[2]) throw new Error(`not a label_values(selector, label) query: ${query}`);
  return { selector: match[1], label: match[2] };
}

/** Query variables (Grafana functions such as label_values, not PromQL). */
export function queryVariables(dashboard: GrafanaDashboard): Array<{ name: string; query: string }> {
  return dashboard.templating.list
    .filter((variable) => variable.type === "query")
    .map((variable) => ({ name: variable.name, query: variableQuery(variable) ?? "" }));
}
