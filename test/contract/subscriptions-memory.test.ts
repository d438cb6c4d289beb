import { createMemorySubscriptions } from "../../src/mux/subscriptions.js";
import { createKeyScheme } from "../../src/store/keys.js";
import { createMemoryPubSub } from "../../src/store/pubsub.js";
import { randomPrefix } from "../helpers/index.js";
import { runSubscriptionsContract } from "./subscriptions.contract.js";

runSubscriptionsContract("memory", async (limits) => {
  let now = 1_700_000_000_000;
  const pubsub = createMemoryPubSub();
  return {
    subscriptions: createMemorySubscriptions(pubsub, createKeyScheme(randomPrefix()), limits, () => now),
    async elapse(ms) {
      now += ms;
    },
    close: () => pubsub.close(),
  };
});
