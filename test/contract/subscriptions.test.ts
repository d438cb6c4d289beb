/** The SubscriptionStore contract over every backend kind (backends.ts). */
import { BACKENDS } from "./backends.js";
import { runSubscriptionsContract } from "./subscriptions.contract.js";

for (const kind of BACKENDS) {
  runSubscriptionsContract(kind.name, async (subscriptionLimits) => {
    const { backend, elapse, close } = await kind.build({ subscriptionLimits });
    return { subscriptions: backend.subscriptions, elapse, close };
  });
}
