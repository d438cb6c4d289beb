/**
 * The Dockerfile's properties, checked without a Docker engine. No Dockerfile linter is packaged for
 * Debian (no hadolint) and the project adds no npm dependency for one, so these are the rules a lint
 * would hold us to that matter here, read from the file itself. Part of the main suite (not e2e), so
 * CI runs it with the unit tests, whatever the e2e environment.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const read = (path: string) => readFileSync(join(REPO_ROOT, path), "utf8");

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");
  const stages = [...dockerfile.matchAll(/^FROM\s+\S+(?:\s+AS\s+(\S+))?/gim)];
  const runtime = dockerfile.slice(stages.at(-1)?.index ?? 0);

  it("builds in stages; the final one installs production dependencies only and copies the build", () => {
    expect(stages.length, "multi-stage").toBeGreaterThanOrEqual(2);
    expect(runtime).toMatch(/npm ci --omit=dev/);
    expect(runtime).toMatch(/COPY --from=\S+ \/app\/dist/);
  });

  it("runs as a non-root user, checks /healthz, and starts node in exec form (node receives SIGTERM)", () => {
    const user = /^USER\s+(\S+)/m.exec(runtime)?.[1];
    expect(user, "a USER in the final stage").toBeDefined();
    expect(["root", "0"]).not.toContain(user);
    expect(runtime).toMatch(/^HEALTHCHECK\s[\s\S]*?\/healthz/m);
    expect(runtime).toMatch(/^CMD\s+\["node",/m);
  });

  it("pins its base image by tag, never `latest`", () => {
    const base = /^ARG\s+NODE_IMAGE=(\S+)/m.exec(dockerfile)?.[1];
    for (const stage of stages) {
      const image = /^FROM\s+(\S+)/i.exec(stage[0])?.[1] ?? "";
      const resolved = image === `\${NODE_IMAGE}` ? base : image;
      expect(resolved, stage[0]).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(resolved).not.toMatch(/:latest$/);
    }
  });

  it(".dockerignore keeps dependencies, git, secrets and build output out of the context", () => {
    const ignored = read(".dockerignore")
      .split("\n")
      .map((line) => line.trim());
    for (const entry of ["node_modules", ".git", ".env", "dist"]) expect(ignored).toContain(entry);
  });
});
