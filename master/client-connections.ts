import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../shared/log.js';

// The main port's connections (limits.maxClientConnections): how many are open, and a bound past which a new one is
// closed as it is accepted (Node's server.maxConnections; nginx's worker_connections, Envoy's listener connection
// limit). Bounded, the master keeps the descriptors its workers' connections and forks need (master/file-limit.ts).

/** At most one warn line this often while connections are being closed; the metric counts every one. */
const DROP_LOG_INTERVAL_MS = 10_000;

/** What /admin/status shows of the main port's connections. */
export interface ClientConnectionsStatus {
  /** Open right now. */
  open: number;
  /** limits.maxClientConnections, or what the open-file limit leaves; null: no bound (no limit to read). */
  max: number | null;
  /** Connections closed as they were accepted, at the bound, since the master started. */
  dropped: number;
}

export interface ClientConnectionsOptions {
  max: number | undefined;
  log: Logger;
}

export class ClientConnections {
  readonly max: number | undefined;
  #open = 0;
  #dropped = 0;
  /** Drops since the last warn line. */
  #unlogged = 0;
  #loggedAtMs = -Infinity;
  readonly #log: Logger;
  /** One listener for every socket's close, not a closure each. */
  readonly #onClose = (): void => {
    this.#open--;
  };

  constructor(options: ClientConnectionsOptions) {
    this.max = options.max;
    this.#log = options.log;
  }

  /** Counts the server's connections and, with a bound, closes those past it. */
  watch(server: Server): void {
    if (this.max !== undefined) server.maxConnections = this.max;
    server.on('connection', (socket: Socket) => {
      this.#open++;
      socket.once('close', this.#onClose);
    });
    server.on('drop', () => this.#onDrop());
  }

  status(): ClientConnectionsStatus {
    return { open: this.#open, max: this.max ?? null, dropped: this.#dropped };
  }

  #onDrop(): void {
    this.#dropped++;
    this.#unlogged++;
    const now = performance.now();
    if (now - this.#loggedAtMs < DROP_LOG_INTERVAL_MS) return;
    this.#log.warn(
      { maxClientConnections: this.max, dropped: this.#unlogged },
      'client connections at limits.maxClientConnections: connections past it are closed as they come',
    );
    this.#unlogged = 0;
    this.#loggedAtMs = now;
  }
}
