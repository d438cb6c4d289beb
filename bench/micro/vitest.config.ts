import { defineConfig } from "vitest/config";

/**
 * Micro-benches of the hot paths (`npm run bench:micro`): pure code in one process, no Redis and no
 * servers, so unlike the test config there is no global setup. `vitest bench` prints operations per
 * second with their spread; on a shared machine compare runs made back to back.
 */
export default defineConfig({
  test: {
    include: [],
    benchmark: { include: ["bench/micro/**/*.bench.ts"] },
    pool: "forks",
    fileParallelism: false,
  },
});
