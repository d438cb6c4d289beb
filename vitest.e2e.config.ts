import { defineConfig } from "vitest/config";

/** End-to-end tests: gateway processes, killed instances, Redis outages. One file at a time. */
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    globalSetup: ["test/helpers/global-setup.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    teardownTimeout: 60_000,
  },
});
