/**
 * A producer's `POST …/events` reaches this instance's readers as soon as the store acknowledges it,
 * not only through the batch's pub/sub notice: with the instance's notices silenced, a local reader
 * still gets every batch, in order, once; a reader on another instance (Redis) gets it by the notice.
 */
import { afterEach, describe, expect, inject, it } from "vitest";
import { openSse, postJson, type SseEvent, startTestGateway, type TestGateway } from "../helpers/index.js";

const token = (content: string) => ({ type: "token", data: { content } });

/** Stops the hub hearing notices (as if the instance's pub/sub link were slow to deliver them). */
function silenceNotices(gw: TestGateway): void {
  gw.gateway.context.store.notifier.setListener({ onAppend: () => {}, onResync: () => {} });
}

const contents = (events: readonly SseEvent[]) =>
  events.filter((event) => event.event === "token").map((event) => JSON.parse(event.data).content as string);

const backends: Array<[string, () => string | undefined]> = [
  ["memory", () => undefined],
  ["redis", () => inject("redisUrl")],
];

describe.each(backends)("POST …/events delivered locally (%s)", (_name, redisUrl) => {
  const gateways: TestGateway[] = [];
  afterEach(async () => {
    await Promise.all(gateways.splice(0).map((gw) => gw.close()));
  });

  it("reaches a reader on the same instance without the notice, each batch once", async () => {
    const url = redisUrl();
    const gw = await startTestGateway(url ? { redisUrl: url } : {});
    gateways.push(gw);
    const id = `local-${Date.now()}`;
    const created = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, { events: [token("a")] });
    expect(created.status, created.text).toBe(202);
    const stream = await openSse(`${gw.url}/api/v1/sessions/${id}/stream`);
    await stream.waitFor((events) => contents(events).length === 1);
    silenceNotices(gw);
    for (const content of ["b", "c", "d"]) {
      const res = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, { events: [token(content)] });
      expect(res.status, res.text).toBe(202);
    }
    const batch = await postJson(`${gw.url}/api/v1/sessions/${id}/events`, {
      events: [token("e"), token("f")],
    });
    expect(batch.status, batch.text).toBe(202);
    await stream.waitFor((events) => contents(events).length === 6);
    expect(contents(stream.events)).toEqual(["a", "b", "c", "d", "e", "f"]);
    const ids = stream.events.filter((event) => event.event === "token").map((event) => event.id);
    expect(ids).toEqual([...new Set(ids)]);
    stream.close();
  });
});

describe("POST …/events read on another instance (redis)", () => {
  const gateways: TestGateway[] = [];
  afterEach(async () => {
    await Promise.all(gateways.splice(0).map((gw) => gw.close()));
  });

  it("reaches a reader on another instance by the notice", async () => {
    const a = await startTestGateway({ redisUrl: inject("redisUrl") });
    gateways.push(a);
    const b = await startTestGateway({ redisUrl: inject("redisUrl"), prefix: a.prefix });
    gateways.push(b);
    const id = `remote-${Date.now()}`;
    await postJson(`${a.url}/api/v1/sessions/${id}/events`, { events: [token("a")] });
    const stream = await openSse(`${b.url}/api/v1/sessions/${id}/stream`);
    await stream.waitFor((events) => contents(events).length === 1);
    silenceNotices(a);
    await postJson(`${a.url}/api/v1/sessions/${id}/events`, { events: [token("b"), token("c")] });
    await stream.waitFor((events) => contents(events).length === 3);
    expect(contents(stream.events)).toEqual(["a", "b", "c"]);
    stream.close();
  });
});
