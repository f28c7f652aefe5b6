import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../shared/log.js';
import { clientConnectionsFor, OVER_BOUND_CONNECTIONS } from './file-limit.js';

// The main port's connections (limits.maxClientConnections; nginx's worker_connections, Envoy's listener connection
// limit): how many are open, and a bound that keeps the descriptors the master's workers need (master/file-limit.ts).
// At the bound a new connection takes the place of the oldest one with no request in hand, that has sent nothing yet
// or waits idle between requests, which is closed (nginx drains its reusable connections so when short of them): a
// few hundred connections that sent nothing had every new client reset, health probes included, for as long as
// their owner reopened them (a probe). A connection in a request, or sending its head, is never closed for another.
// When none can be closed (REUSE_SCAN looked at), past the bound, OVER_BOUND_CONNECTIONS more are accepted: their
// requests are answered `503 too_many_connections` and closed (health paths are answered: a kubelet's probe is no
// client to shed), and each is closed
// OVER_BOUND_LIFETIME_MS after it was accepted whatever it sends (a trickled head or a kept-alive answer held one for
// minutes). They do not count against the bound: a connection is within it while fewer than the bound are. Past
// those, Node closes a connection as it accepts it (server.maxConnections = the bound + OVER_BOUND_CONNECTIONS).
// With directStreams a worker holds a duplicate of a connection it answers; the master sends it with keepOpen, so
// its own copy, its count and its 'close' stay as they are.

/**
 * Life of a connection accepted past the bound, ms: a probe or a client sends its request at once, and a refused
 * upload is read and dropped for up to 5 s (gateway.ts) before its connection closes.
 */
const OVER_BOUND_LIFETIME_MS = 5_000;

/** At most one warn line this often while connections are refused; the status and metrics count every one. */
const LOG_INTERVAL_MS = 10_000;

/**
 * Connections looked at, oldest first, for one to close at the bound: those in a request go to the back of the line,
 * so a new connection costs a bounded look whatever is open.
 */
const REUSE_SCAN = 64;

/** What /admin/status shows of the main port's connections. */
export interface ClientConnectionsStatus {
  /** Open right now (those past the bound included). */
  open: number;
  /** limits.maxClientConnections, or what the open-file limit leaves for the workers alive now; null: no bound. */
  max: number | null;
  /**
   * Accepted past the bound since the master started: their requests answered 503 too_many_connections, health checks
   * 200, each closed after its answer or OVER_BOUND_LIFETIME_MS.
   */
  pastBound: number;
  /** Closed as they were accepted, past the bound and the connections answered past it. */
  dropped: number;
  /** Closed at the bound for a new connection, having no request in hand (silent, or idle between requests). */
  closedIdle: number;
}

/** What the main server says of a connection it holds (main-server.ts). */
export interface HeldConnections {
  /** No request in hand, nor a head on its way: it has sent nothing yet, or nothing since its last answer. */
  isReusable(socket: Socket): boolean;
  /** Closes an idle connection (gateway.ts closeIdle: a FIN though a worker holds a duplicate). */
  close(socket: Socket): void;
}

export interface ClientConnectionsOptions {
  /** limits.maxClientConnections: a fixed bound. Undefined: from fileLimit and the workers alive. */
  configured: number | undefined;
  /** The master's open-file limit (file-limit.ts openFileLimit); undefined: none to read, and no bound. */
  fileLimit: number | undefined;
  maxIdleSocketsPerWorker: number;
  log: Logger;
  /** At most one warn line this often; default LOG_INTERVAL_MS (tests shorten it). */
  logIntervalMs?: number;
}

export class ClientConnections {
  readonly #options: ClientConnectionsOptions;
  #max: number | undefined;
  #server: Server | undefined;
  /** Open connections within the bound, and past it. */
  #within = 0;
  #past = 0;
  #pastBound = 0;
  #dropped = 0;
  #closedIdle = 0;
  /**
   * Connections within the bound, oldest first (an index queue; closed ones are skipped as they are met, and swept
   * when they are half of it): where one to close at the bound is looked for.
   */
  #line: Array<Socket | undefined> = [];
  #lineHead = 0;
  #held: HeldConnections | undefined;
  /** Refusals and drops since the last warn line. */
  #unlogged = 0;
  #loggedAtMs = -Infinity;
  #flushTimer: NodeJS.Timeout | undefined;
  readonly #overBound = new WeakSet<Socket>();
  /** One listener for every socket's close, not a closure each. */
  readonly #onWithinClose = (): void => {
    this.#within--;
    // Raised to the connections open (#apply), Node's cap comes down with them.
    if (this.#max !== undefined && this.#within >= this.#max) this.#apply();
  };

  constructor(options: ClientConnectionsOptions) {
    this.#options = options;
    this.#max = options.configured;
    this.setWorkers(0); // the supervisor says how many as it forks them
  }

  /** Worker processes alive changed (supervisor.ts): a bound from the file limit follows their descriptors. */
  setWorkers(workers: number): void {
    const { configured, fileLimit, maxIdleSocketsPerWorker } = this.#options;
    if (configured !== undefined || fileLimit === undefined) return;
    this.#max = clientConnectionsFor(fileLimit, workers, maxIdleSocketsPerWorker);
    this.#apply();
  }

  /** Counts the server's connections and bounds them; at the bound, `held` says which one may be closed. */
  watch(server: Server, held?: HeldConnections): void {
    this.#server = server;
    this.#held = held;
    this.#apply();
    server.on('connection', (socket: Socket) => {
      if (this.#max === undefined) {
        this.#within++;
        socket.once('close', this.#onWithinClose);
        return;
      }
      if (this.#within >= this.#max) {
        const idle = this.#takeReusable();
        if (idle === undefined) return this.#pastOne(socket);
        this.#closedIdle++;
        held!.close(idle);
        this.#noteRefusal();
      }
      this.#within++;
      socket.once('close', this.#onWithinClose);
      this.#line.push(socket);
      if (this.#line.length - this.#lineHead > 2 * this.#within + REUSE_SCAN) this.#sweep();
    });
    server.on('drop', () => {
      this.#dropped++;
      this.#noteRefusal();
    });
  }

  /** Accepted past the bound: its requests are refused (gateway.ts), its health checks answered. */
  isOverBound(socket: Socket): boolean {
    return this.#overBound.has(socket);
  }

  status(): ClientConnectionsStatus {
    return {
      open: this.#within + this.#past,
      max: this.#max ?? null,
      pastBound: this.#pastBound,
      dropped: this.#dropped,
      closedIdle: this.#closedIdle,
    };
  }

  /**
   * The oldest connection within the bound with no request in hand, taken out of the line; undefined when none of the
   * REUSE_SCAN looked at is (those in a request go to the back).
   */
  #takeReusable(): Socket | undefined {
    const held = this.#held;
    if (held === undefined) return undefined;
    const line = this.#line;
    for (let looked = 0; looked < REUSE_SCAN && this.#lineHead < line.length;) {
      const socket = line[this.#lineHead]!;
      line[this.#lineHead++] = undefined;
      if (socket.destroyed) continue; // closed: out of the line for good
      looked++;
      if (held.isReusable(socket)) return socket;
      line.push(socket);
    }
    if (this.#lineHead >= 1024 && this.#lineHead * 2 >= line.length) this.#sweep();
    return undefined;
  }

  /** The line without the connections closed since they joined it (amortised: it runs once half of it is). */
  #sweep(): void {
    const open: Socket[] = [];
    for (let i = this.#lineHead; i < this.#line.length; i++) {
      const socket = this.#line[i];
      if (socket !== undefined && !socket.destroyed) open.push(socket);
    }
    this.#line = open;
    this.#lineHead = 0;
  }

  /** A connection accepted past the bound: refused requests (gateway.ts), and a life of OVER_BOUND_LIFETIME_MS. */
  #pastOne(socket: Socket): void {
    this.#past++;
    this.#pastBound++;
    this.#overBound.add(socket);
    // Not the socket's idle timeout: a byte a second renews it, and Node's HTTP server sets its own after a kept-alive
    // answer. Rare by construction, so a timer each.
    const timer = setTimeout(() => socket.destroy(), OVER_BOUND_LIFETIME_MS).unref();
    socket.once('close', () => {
      clearTimeout(timer);
      this.#past--;
    });
    this.#noteRefusal();
  }

  #apply(): void {
    // A bound lowered under the connections open closes none of them; Node's cap is never set under them, or it would
    // accept none, health probes included, until enough closed (an admin probe: a deploy's new workers lowered the
    // bound from 330 to 262 under 300 open connections, and 359 fresh ones were reset, none answered 503): past the
    // bound, OVER_BOUND_CONNECTIONS more are answered as always.
    if (this.#server !== undefined && this.#max !== undefined)
      this.#server.maxConnections = Math.max(this.#max, this.#within) + OVER_BOUND_CONNECTIONS;
  }

  #noteRefusal(): void {
    this.#unlogged++;
    const intervalMs = this.#options.logIntervalMs ?? LOG_INTERVAL_MS;
    const sinceMs = performance.now() - this.#loggedAtMs;
    if (sinceMs >= intervalMs) return this.#logRefusals();
    // The rest of a burst gets its line when the interval ends, not at the next refusal, hours later.
    this.#flushTimer ??= setTimeout(() => this.#logRefusals(), intervalMs - sinceMs).unref();
  }

  #logRefusals(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#unlogged === 0) return;
    this.#options.log.warn(
      {
        maxClientConnections: this.#max,
        pastBound: this.#pastBound,
        dropped: this.#dropped,
        closedIdle: this.#closedIdle,
        sinceLastLine: this.#unlogged,
      },
      'client connections at limits.maxClientConnections: idle ones are closed for new ones, else new ones are ' +
        'answered 503 too_many_connections, or closed',
    );
    this.#unlogged = 0;
    this.#loggedAtMs = performance.now();
  }
}
