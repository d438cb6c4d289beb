/**
 * A session keeps the fingerprint of the request that created it (a caller's own id), on every backend
 * kind (backends.ts): POST /api/v1/sessions tells a retry from another request for the id by it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StreamStore } from "../../src/store/types.js";
import { BACKENDS, type TestBackend } from "./backends.js";

for (const kind of BACKENDS) {
  describe(`a session's creation fingerprint (${kind.name})`, () => {
    let built: TestBackend;
    let store: StreamStore;
    beforeAll(async () => {
      built = await kind.build();
      store = built.backend.store;
    });
    afterAll(() => built?.close());

    it("is kept with the session, and a second creation neither replaces it nor succeeds", async () => {
      const id = `fp_${Date.now().toString(36)}`;
      const session = { id, model: null, metadata: {}, owner: "alice", createdAt: Date.now() };
      expect(await store.createSession({ ...session, fingerprint: "digest-1" })).toBe(true);
      expect((await store.getSession(id))?.fingerprint).toBe("digest-1");
      expect(await store.createSession({ ...session, fingerprint: "digest-2" })).toBe(false);
      const info = await store.getSession(id);
      expect(info?.fingerprint).toBe("digest-1");
      expect(info?.owner).toBe("alice");
    });

    it("is absent from a session created without one (an append, a gateway id)", async () => {
      const id = `nofp_${Date.now().toString(36)}`;
      const outcome = await store.append(id, [{ type: "token", data: { content: "x" } }], {
        createIfMissing: { id, model: null, metadata: {}, owner: null, createdAt: Date.now() },
      });
      expect(outcome.kind).toBe("appended");
      expect((await store.getSession(id))?.fingerprint).toBeUndefined();
    });
  });
}
