// Preloaded into the Node servers under test (`node --expose-gc --import …`): SIGUSR2 runs a full
// garbage collection, so the idle scenario measures live memory rather than garbage not yet collected.
process.on("SIGUSR2", () => globalThis.gc?.());
