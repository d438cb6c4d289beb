/**
 * nginx/compose.conf and nginx/compose-tls.conf are generated from nginx/gateway.conf; docker-compose.yml
 * mounts the generated files. Edit gateway.conf without regenerating them and the stack runs the old
 * config: this fails instead, with the command that brings them back in line.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** What `node nginx/render.mjs <flag>` prints, run as the files' headers tell a person to run it. */
function render(flag: string): string {
  const run = spawnSync(process.execPath, ["nginx/render.mjs", flag], { cwd: REPO_ROOT, encoding: "utf8" });
  expect(run.status, run.stderr).toBe(0);
  return run.stdout;
}

describe("nginx compose configs are what render.mjs makes of gateway.conf", () => {
  for (const [file, flag] of [
    ["nginx/compose.conf", "--compose"],
    ["nginx/compose-tls.conf", "--compose-tls"],
  ] as const) {
    it(`${file} = node nginx/render.mjs ${flag}`, () => {
      const committed = readFileSync(join(REPO_ROOT, file), "utf8");
      expect(committed, `${file} is stale: run  node nginx/render.mjs ${flag} > ${file}`).toBe(render(flag));
    });
  }
});
