/** The PubSub contract over every backend kind (backends.ts). */
import { BACKENDS } from "./backends.js";
import { runPubSubContract } from "./pubsub.contract.js";

for (const kind of BACKENDS) {
  runPubSubContract(kind.name, async () => {
    const { backend, close } = await kind.build();
    return { pubsub: backend.pubsub, close };
  });
}
