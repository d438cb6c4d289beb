import type { ModelProvider } from "./types.js";

export * from "./openai-provider.js";
export * from "./simulated-provider.js";
export * from "./types.js";

/** The model name that always selects the simulated provider, key or not. */
export const SIMULATED_MODEL = "simulated";

export function selectProvider(
  model: string,
  providers: { openai?: ModelProvider; simulated: ModelProvider },
): ModelProvider {
  if (model === SIMULATED_MODEL || providers.openai === undefined) return providers.simulated;
  return providers.openai;
}
