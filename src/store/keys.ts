/**
 * Every Redis key and channel name, built in one place from the deployment prefix. Keys of one session
 * carry the `{sessionId}` hash tag so that they share a Redis Cluster slot (the append script touches
 * the stream, the metadata and the lease together).
 */
export interface KeyScheme {
  events(sessionId: string): string;
  meta(sessionId: string): string;
  lease(sessionId: string): string;
  /** The first reply of one append request, kept so a repeat answers it again. */
  request(sessionId: string, requestId: string): string;
  /** A session's compacted history: the snapshot's small fields, and its text and reasoning. */
  snapshot(sessionId: string): string;
  snapshotContent(sessionId: string): string;
  snapshotReasoning(sessionId: string): string;
  /** Events appended to a session in one publish-rate window. */
  publishRate(sessionId: string, windowIndex: number): string;
  /** Pub/sub channel announcing appends to one session's stream. */
  notices(sessionId: string): string;
  /** Sorted set of running sessions by lease expiry: where the crash sweeper looks. */
  leaseIndex(): string;
  /** Pub/sub channel carrying control messages (cancel) to every instance. */
  control(): string;
  subscription(subscriptionId: string): string;
  subscriptionChannel(subscriptionId: string): string;
}

export function createKeyScheme(prefix: string): KeyScheme {
  return {
    events: (id) => `${prefix}s:{${id}}:events`,
    meta: (id) => `${prefix}s:{${id}}:meta`,
    lease: (id) => `${prefix}s:{${id}}:lease`,
    request: (id, requestId) => `${prefix}s:{${id}}:req:${requestId}`,
    snapshot: (id) => `${prefix}s:{${id}}:snap`,
    snapshotContent: (id) => `${prefix}s:{${id}}:snap:content`,
    snapshotReasoning: (id) => `${prefix}s:{${id}}:snap:reasoning`,
    publishRate: (id, windowIndex) => `${prefix}s:{${id}}:rate:${windowIndex}`,
    notices: (id) => `${prefix}n:{${id}}`,
    leaseIndex: () => `${prefix}leases`,
    control: () => `${prefix}control`,
    subscription: (sid) => `${prefix}sub:{${sid}}`,
    subscriptionChannel: (sid) => `${prefix}subn:{${sid}}`,
  };
}
