/**
 * One loader for the Lua scripts in `./lua`. A file is named `<name>-<numKeys>.lua`, so its key count
 * is stated once, in its name; each script becomes an ioredis command (`subscription-patch-2` →
 * `gatewaySubscriptionPatch`), defined once per client, which sends EVALSHA and falls back to EVAL
 * when the server's script cache is empty (after a restart).
 */
import { readdirSync, readFileSync } from "node:fs";
import type { RedisClient } from "./redis-client.js";

/**
 * How long a script remembers the reply of an accepted call under the call's request id, 300 s by
 * default. ioredis resends a command whose reply was lost once the connection is back (Redis restarted
 * after running it, with its data kept): the resent call then finds the record and answers the same,
 * without writing again. It covers outages shorter than this; the records cost one key per accepted
 * call for this long.
 */
export const DEFAULT_REQUEST_RECORD_TTL_SECONDS = 300;

export type ScriptCall<Reply> = (...keysAndArgs: Array<string | number>) => Promise<Reply>;

const FILE_NAME = /^([a-z]+(?:-[a-z]+)*)-(\d+)$/;
const sources = new Map<string, string>();

function source(file: string): string {
  let text = sources.get(file);
  if (text === undefined) {
    text = readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), "utf8");
    sources.set(file, text);
  }
  return text;
}

/** `subscription-patch` → `gatewaySubscriptionPatch`: the command's name on the ioredis client. */
export function commandName(name: string): string {
  return `gateway${name.replace(/(?:^|-)([a-z])/g, (_, letter: string) => letter.toUpperCase())}`;
}

/** The name of a script's command that is written at once (see `script`'s `atOnce`). */
const atOnceName = (name: string) => `${commandName(name)}AtOnce`;

/**
 * Every script's at-once command: the connections leave them out of auto-pipelining
 * (`autoPipeliningIgnoredCommands`), so each is written when called, ahead of the turn's pipelined
 * commands (which it may therefore overtake: only a caller for which that order does not matter uses it).
 */
export const AT_ONCE_COMMANDS: readonly string[] = readdirSync(new URL("./lua/", import.meta.url))
  .filter((file) => file.endsWith(".lua"))
  .map((file) => FILE_NAME.exec(file.slice(0, -4))?.[1])
  .filter((name): name is string => name !== undefined)
  .map(atOnceName);

/**
 * The script `file` (e.g. `"acquire-1"`, without `.lua`) as a function of its keys then its arguments.
 * `Reply` is what the script returns, as ioredis decodes it (the caller states it; nothing checks it).
 * `atOnce`: each call is written to the connection when made, not auto-pipelined with the turn's other
 * commands (a run's latency-bound calls; the connection must list AT_ONCE_COMMANDS as ignored).
 */
export function script<Reply>(
  redis: RedisClient,
  file: string,
  { atOnce = false }: { atOnce?: boolean } = {},
): ScriptCall<Reply> {
  const match = FILE_NAME.exec(file);
  if (!match) throw new Error(`script ${file}: the file name must be <name>-<numKeys>`);
  const name = atOnce ? atOnceName(match[1]!) : commandName(match[1]!);
  const commands = redis as unknown as Record<string, ScriptCall<Reply> | undefined>;
  if (typeof commands[name] !== "function") {
    redis.defineCommand(name, { numberOfKeys: Number(match[2]), lua: source(file) });
  }
  const command = commands[name]!;
  return (...keysAndArgs) => command.apply(redis, keysAndArgs);
}
