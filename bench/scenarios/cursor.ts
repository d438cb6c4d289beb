/**
 * Cursor size: bytes of the multiplexed `id:` for 1, 10, 100 and 1000 sessions on one connection,
 * when every session has a position (each received one token), when 90% have ended, and when every session has ended
 * (the cursor keeps only "finished" marks). Up to 256 sessions ride a `sessions=` query, beyond that
 * a subscription set.
 */
import type { ScenarioContext } from "../lib/context.js";
import { tag } from "../lib/context.js";
import { expectOk, httpClient } from "../lib/http.js";
import { sleep } from "../lib/procs.js";
import { startTarget } from "../targets/index.js";

const QUERY_LIMIT = 256;

export const cursorScenario = {
  name: "cursor",
  title: "Cursor size per session count",
  async run(context: ScenarioContext) {
    if (!context.targets.includes("gateway")) return;
    const counts = context.quick ? [1, 10, 300] : [1, 10, 100, 1000];
    const target = await startTarget("gateway", context.targetOptions);
    const client = httpClient(target.host, target.port, 32);
    const { loadgen } = context;
    const waitFor = async (what: string, check: () => Promise<boolean>) => {
      const deadline = performance.now() + 30_000;
      while (!(await check())) {
        if (performance.now() > deadline) throw new Error(`cursor: timed out waiting for ${what}`);
        await sleep(20);
      }
    };
    try {
      for (const n of counts) {
        const ids = Array.from({ length: n }, (_, i) => `${tag("c")}-${i}`);
        await target.publisher.createSessions(ids);
        await Promise.all(ids.map((id) => target.publisher.appendTokens(id, 1, [Date.now()])));
        let path = `/api/v1/stream?sessions=${ids.join(",")}`;
        if (n > QUERY_LIMIT) {
          const created = await client.json<{ id: string }>("POST", "/api/v1/subscriptions", {
            sessions: ids,
          });
          expectOk("create a subscription set", created);
          path = `/api/v1/stream?subscription=${created.body.id}`;
        }
        await loadgen.init(ids);
        await loadgen.reset();
        const open = await loadgen.open(target.host, target.port, [{ path, sessions: ids.map((_, i) => i) }]);
        if (open.failed > 0) throw new Error(`cursor n=${n}: ${open.errors.join("; ")}`);
        await waitFor(`${n} tokens`, async () => (await loadgen.behind(new Int32Array(n).fill(1))) === 0);
        const positioned = await loadgen.snapshot(false);
        const end = (some: string[]) =>
          Promise.all(
            some.map(async (id) => {
              const reply = await client.json("POST", `/api/v1/sessions/${id}/events`, {
                events: [{ type: "done", data: { session_id: id, total_tokens: 1, finish_reason: "stop" } }],
              });
              expectOk(`end ${id}`, reply);
            }),
          );
        const mostly = Math.floor(n * 0.9);
        await end(ids.slice(0, mostly));
        // Every session's `start` counts as another event, plus `connected`, plus the `done`s so far.
        await waitFor(
          `${mostly} done events`,
          async () => (await loadgen.snapshot(false)).others >= n + mostly + 1,
        );
        const mostlyFinished = await loadgen.snapshot(false);
        await Promise.all(
          ids.slice(mostly).map(async (id) => {
            const reply = await client.json("POST", `/api/v1/sessions/${id}/events`, {
              events: [{ type: "done", data: { session_id: id, total_tokens: 1, finish_reason: "stop" } }],
            });
            expectOk(`end ${id}`, reply);
          }),
        );
        // Every session's `start` and `done` count as other events, plus `connected`.
        await waitFor(`${n} done events`, async () => (await loadgen.snapshot(false)).others >= 2 * n + 1);
        const finished = await loadgen.snapshot(false);
        await loadgen.closeConnections();
        const data = {
          via: n > QUERY_LIMIT ? "subscription" : "sessions",
          positionedBytes: positioned.idLast,
          positionedBytesPerSession: Math.round((positioned.idLast / n) * 10) / 10,
          mostlyFinishedBytes: mostlyFinished.idLast,
          finishedBytes: finished.idLast,
          maxBytes: finished.idMax,
          closedByServer: finished.closedByServer,
        };
        context.log(
          `${String(n).padStart(5)} sessions (${data.via}): id ${data.positionedBytes} B while streaming ` +
            `(${data.positionedBytesPerSession} B/session), ${data.mostlyFinishedBytes} B with 90% ended, ` +
            `${data.finishedBytes} B once all ended`,
        );
        context.record("cursor", "gateway", { sessions: n }, data);
      }
    } finally {
      client.close();
      await loadgen.closeConnections();
      await target.stop();
    }
  },
};
