// `npm start` runs the built server; on a fresh clone there is nothing built yet, so build first.
import { execSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

const built = "dist/server.js";
if (!existsSync(built) || statSync(built).mtimeMs < newestMtime("src")) {
  console.error("building (dist/ is missing or older than src/)…");
  execSync("npm run build", { stdio: "inherit" });
}
