/** The StreamStore contract over every backend kind (backends.ts). */
import { BACKENDS } from "./backends.js";
import { runStreamStoreContract } from "./stream-store.contract.js";

for (const kind of BACKENDS) {
  runStreamStoreContract(kind.name, async (retention) => {
    const { backend, close } = await kind.build({ retention });
    return { store: backend.store, close };
  });
}
