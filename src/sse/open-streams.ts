/** Every open SSE stream of this instance, so a draining instance can send each away in turn. */
import { retryLine } from "./frames.js";
import type { SseWriter } from "./writer.js";

export class OpenStreams {
  private readonly writers = new Set<SseWriter>();

  add(writer: SseWriter): void {
    this.writers.add(writer);
  }

  delete(writer: SseWriter): void {
    this.writers.delete(writer);
  }

  get size(): number {
    return this.writers.size;
  }

  /**
   * Closes every stream, spread evenly over `spreadMs` so that clients do not all reconnect in the
   * same second; each gets a final `retry:` line with jitter first (no blank line after it: alone in a
   * block it would be an empty message to fetch-based clients). Resolves when all are closed.
   */
  async closeAll(spreadMs: number, retryMs: number): Promise<void> {
    const writers = [...this.writers];
    const stepMs = writers.length > 0 ? spreadMs / writers.length : 0;
    await Promise.all(
      writers.map(
        (writer, position) =>
          new Promise<void>((resolve) => {
            setTimeout(() => {
              writer.end(retryLine(Math.round(retryMs * (0.5 + Math.random()))));
              resolve();
            }, position * stepMs);
          }),
      ),
    );
  }
}
