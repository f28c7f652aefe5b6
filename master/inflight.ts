import type { Server } from 'node:http';

// Counts requests in flight on a server so shutdown can wait for requests,
// not connections: a connection that never sends a request (or an idle
// keep-alive one) would otherwise hold server.close() until the deadline.

export class InflightTracker {
  #count = 0;
  #waiters: Array<() => void> = [];

  constructor(server: Server, onRequestDone: () => void = () => undefined) {
    server.on('request', (_req, res) => {
      this.#count++;
      res.once('close', () => {
        this.#count--;
        onRequestDone();
        if (this.#count === 0) for (const w of this.#waiters.splice(0)) w();
      });
    });
  }

  get count(): number {
    return this.#count;
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}
