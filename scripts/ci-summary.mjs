// Adds up vitest JSON reports and CI checks, prints failures, and ends with "N passed, N failed".
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [resultsDir, checksPassed, checksFailed, ...failedChecks] = process.argv.slice(2);
let passed = Number(checksPassed);
let failed = Number(checksFailed);
for (const name of failedChecks) console.log(`failed check: ${name}`);

for (const file of existsSync(resultsDir) ? readdirSync(resultsDir) : []) {
  if (!file.endsWith(".json")) continue;
  const report = JSON.parse(readFileSync(join(resultsDir, file), "utf8"));
  passed += report.numPassedTests ?? 0;
  const failedTests =
    (report.numFailedTests ?? 0) + (report.numTodoTests ?? 0) + (report.numPendingTests ?? 0);
  failed += failedTests;
  for (const suite of report.testResults ?? []) {
    for (const test of suite.assertionResults ?? []) {
      if (test.status !== "passed") console.log(`${test.status}: ${test.fullName} (${suite.name})`);
    }
    // A file that failed to load has no assertions but still failed.
    if ((suite.assertionResults ?? []).length === 0 && suite.status === "failed") {
      failed += 1;
      console.log(`failed to run: ${suite.name}: ${suite.message ?? ""}`);
    }
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
