import { createMemoryPubSub } from "../../src/store/pubsub.js";
import { runPubSubContract } from "./pubsub.contract.js";

runPubSubContract("memory", async () => {
  const pubsub = createMemoryPubSub();
  return { pubsub, close: () => pubsub.close() };
});
