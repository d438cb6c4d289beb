/** The Limiter contract over every backend kind (backends.ts), on the suite's clock. */
import { BACKENDS } from "./backends.js";
import { runLimiterContract } from "./limiter.contract.js";

for (const kind of BACKENDS) {
  runLimiterContract(kind.name, async (clock) => {
    const { backend, close } = await kind.build({ clock });
    return { limiter: backend.limiter, close };
  });
}
