// A worker thread does not inherit the harness's `--import tsx`: it registers tsx itself.
import { register } from "tsx/esm/api";

register();
await import("./fixture-thread.ts");
