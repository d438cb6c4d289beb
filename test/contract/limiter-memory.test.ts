import { createMemoryLimiter } from "../../src/limits/limiter.js";
import { runLimiterContract } from "./limiter.contract.js";

runLimiterContract("memory", async (clock) => ({
  limiter: createMemoryLimiter(clock),
  close: async () => {},
}));
