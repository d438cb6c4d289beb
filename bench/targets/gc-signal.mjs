// Preloaded into the Node servers under test (`node --expose-gc --import …`), the same for every one:
// - SIGUSR2 runs a full garbage collection, so the idle scenario measures memory that is still
//   reachable rather than garbage not yet collected. V8 decides, as it does on any full GC, whether to
//   compact: the free space left between live objects on old-space pages stays in the RSS.
// - SIGWINCH runs a full garbage collection that compacts every page (as V8's memory reducer does once
//   a process has been idle for a while), so the RSS holds live memory without that slack.
// With GC_REPORT_DIR set, each of them then writes `<pid>.json` there: process.memoryUsage() and the
// V8 heap spaces, so the scenario reads every server's heap the same way.
import { writeFileSync } from "node:fs";
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";

function report() {
  const dir = process.env.GC_REPORT_DIR;
  if (!dir) return;
  const spaces = {};
  for (const space of getHeapSpaceStatistics()) {
    spaces[space.space_name] = {
      sizeBytes: space.space_size,
      usedBytes: space.space_used_size,
      physicalBytes: space.physical_space_size,
    };
  }
  writeFileSync(`${dir}/${process.pid}.json`, JSON.stringify({ memory: process.memoryUsage(), spaces }));
}

process.on("SIGUSR2", () => {
  globalThis.gc?.();
  report();
});

process.on("SIGWINCH", () => {
  setFlagsFromString("--compact-on-every-full-gc");
  globalThis.gc?.();
  setFlagsFromString("--no-compact-on-every-full-gc");
  report();
});
