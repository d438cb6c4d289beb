/** The servers under test, started by name. */
import { startGateway, startRawNode } from "./gateway.js";
import { startNchan } from "./nchan.js";
import type { Target, TargetName, TargetOptions } from "./types.js";

export { REPO_ROOT } from "./gateway.js";
export type { RedisSample, RedisServer } from "./redis.js";
export { redisCost, startRedisServer } from "./redis.js";
export * from "./types.js";

export function startTarget(name: TargetName, options: TargetOptions = {}): Promise<Target> {
  switch (name) {
    case "gateway":
      return startGateway(options);
    case "raw-node":
      return startRawNode(options);
    case "nchan":
      return startNchan();
  }
}
