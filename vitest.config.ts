import { defineConfig } from "vitest/config";

/** Unit, contract and integration tests; e2e has its own config (vitest.e2e.config.ts). */
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/e2e/**", "**/node_modules/**", "**/dist/**"],
    globalSetup: ["test/helpers/global-setup.ts"],
    // Forks, not threads: tests spawn processes, handle signals and open many sockets.
    pool: "forks",
    fileParallelism: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 30_000,
  },
});
