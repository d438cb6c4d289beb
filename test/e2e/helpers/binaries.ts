/**
 * Locating the system tools the e2e suite drives (Debian packages: nginx, prometheus). A missing tool
 * is an error with the package to install, never a skip: CI installs them, so a skip would hide a
 * broken CI image.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The first executable among `$envVar`, the candidate paths, and `name` on PATH; throws a message
 * naming the Debian package otherwise.
 */
export function requireBinary(
  name: string,
  opts: { envVar: string; candidates: string[]; debianPackage: string },
): string {
  const fromEnv = process.env[opts.envVar];
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`${opts.envVar}=${fromEnv} is not an executable file`);
  }
  for (const candidate of opts.candidates) if (isExecutable(candidate)) return candidate;
  const which = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  const found = which.stdout.trim();
  if (which.status === 0 && found !== "" && isExecutable(found)) return found;
  throw new Error(
    `${name} is required by the end-to-end suite but was not found (looked at ${opts.candidates.join(", ")} and PATH). ` +
      `Install the Debian package: apt-get install ${opts.debianPackage} (or set ${opts.envVar}).`,
  );
}

export const nginxBinary = () =>
  requireBinary("nginx", { envVar: "NGINX_BIN", candidates: ["/usr/sbin/nginx"], debianPackage: "nginx" });
export const prometheusBinary = () =>
  requireBinary("prometheus", {
    envVar: "PROMETHEUS_BIN",
    candidates: ["/usr/bin/prometheus"],
    debianPackage: "prometheus",
  });
export const promtoolBinary = () =>
  requireBinary("promtool", {
    envVar: "PROMTOOL_BIN",
    candidates: ["/usr/bin/promtool"],
    debianPackage: "prometheus",
  });
