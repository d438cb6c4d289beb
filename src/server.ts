/** Entry point: loadConfig → createGateway → listen; drains on SIGTERM/SIGINT. */
import type { Server } from "node:http";
import { pino } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { createGateway, type Gateway } from "./gateway.js";
import { listen } from "./listen.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  const gateway = await createGateway(config, { logger });
  const { context } = gateway;
  // sse_ready: what /readyz answers, asked at each scrape (dashboards show readiness by instance).
  context.metrics.setReadinessProbe(() => !context.state.draining && context.readiness().ready);
  const { server, port } = await listen(gateway.app, config, config.port, config.host);
  logger.info(
    { port, host: config.host, store: gateway.context.store.kind, instanceId: gateway.instanceId },
    "listening",
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    drain(gateway, server, signal)
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        logger.error({ err: error }, "drain failed");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

/**
 * Draining: readiness turns 503 at once, the listener closes (load balancers send new clients
 * elsewhere), open streams are told to reconnect, spread over DRAIN_MS, and runs of this instance
 * finish (up to RUN_DRAIN_TIMEOUT_MS) before exit.
 */
async function drain(gateway: Gateway, server: Server, signal: string): Promise<void> {
  const { context } = gateway;
  const { config, logger } = context;
  context.state.draining = true;
  logger.info({ signal, streams: context.streams.size, runs: context.runs.activeRuns }, "draining");
  server.close();
  const [, runsFinished] = await Promise.all([
    context.streams.closeAll(config.drainMs, config.retryMs),
    context.runs.waitForRuns(config.runDrainTimeoutMs),
  ]);
  if (!runsFinished)
    logger.warn("runs still active at the drain deadline: their sessions end as interrupted");
  server.closeAllConnections();
  await gateway.close();
  logger.info("drained");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
