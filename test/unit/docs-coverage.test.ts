/**
 * The project's API reference names every setting the gateway reads, so a new variable cannot ship
 * undocumented.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES } from "../../src/config.js";

const apiReference = readFileSync(new URL("../../docs/API.md", import.meta.url), "utf8");

describe("docs/API.md", () => {
  it("names every environment variable the configuration reads", () => {
    expect(CONFIG_VARIABLES.length).toBeGreaterThan(40);
    const missing = CONFIG_VARIABLES.filter((name) => !apiReference.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
