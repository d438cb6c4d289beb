/**
 * A beforeAll whose failure makes every test of the suite FAIL with it. When a plain beforeAll
 * throws, vitest marks the tests skipped, and CI's "N passed, N failed" line would not count them:
 * a missing nginx or Prometheus must show up as failures.
 */
import { beforeAll } from "vitest";

export interface SuiteSetup {
  /** Throws the setup's error, if it failed; call it first in every test. */
  assertReady(): void;
}

export function setupSuite(setup: () => Promise<void>, timeoutMs: number): SuiteSetup {
  let failure: unknown;
  let done = false;
  beforeAll(async () => {
    try {
      await setup();
    } catch (error) {
      failure = error;
    } finally {
      done = true;
    }
  }, timeoutMs);
  return {
    assertReady() {
      if (failure !== undefined) {
        const message = failure instanceof Error ? failure.message : String(failure);
        throw new Error(`suite setup failed: ${message}`, { cause: failure });
      }
      if (!done) throw new Error("suite setup did not run");
    },
  };
}
