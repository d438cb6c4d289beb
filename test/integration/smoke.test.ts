import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  openSse,
  postJson,
  STORE_KINDS,
  startTestGateway,
  storeOptions,
  type TestGateway,
} from "../helpers/index.js";

describe.each(STORE_KINDS)("agent stream over %s", (kind) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(storeOptions(kind));
  });
  afterAll(() => gw.close());

  it("streams start, tokens, usage and done on the POST response", async () => {
    const res = await postJson(`${gw.url}/api/v1/sessions`, { message: "hello [tokens=7]" });
    expect(res.status).toBe(201);
    const stream = await openSse(`${gw.url}${res.body.streamUrl}`);
    await stream.closed;
    const types = stream.events.map((event) => event.event);
    expect(types).toEqual(["start", ...Array(7).fill("token"), "usage", "done"]);
  });
});
