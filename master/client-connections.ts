import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../shared/log.js';
import { addressKey } from './address-key.js';
import { BurstLog } from './burst-log.js';
import { clientConnectionsFor, OVER_BOUND_CONNECTIONS } from './file-limit.js';

// The main port's connections (limits.maxClientConnections; nginx's worker_connections, Envoy's listener connection
// limit): how many are open, and a bound that keeps the descriptors the master's workers need (master/file-limit.ts).
// At the bound a new connection takes the place of the one quiet longest, for MIN_QUIET_MS at least (nothing sent
// since it was accepted, or since its last answer), which is closed (nginx closes its longest idle reusable
// connections so when short of them): a few hundred connections that sent nothing had every new client reset, health
// probes included, for as long as their owner reopened them (a probe). A connection in a request, or with a head on
// its way, is never closed for another, nor one quiet for less (a reviewer: one just accepted, whose request was not
// read yet, was reset, and a keep-alive client between two requests thrashed).
// When none can be closed, past the bound, OVER_BOUND_CONNECTIONS more are accepted: their
// requests are answered `503 too_many_connections` and closed (health paths are answered: a kubelet's probe is no
// client to shed), and each is closed
// OVER_BOUND_LIFETIME_MS after it was accepted whatever it sends (a trickled head or a kept-alive answer held one for
// minutes). They do not count against the bound: a connection is within it while fewer than the bound are. Past
// those, Node closes a connection as it accepts it (server.maxConnections = the bound + OVER_BOUND_CONNECTIONS).
// limits.maxClientConnectionsPerAddress (HAProxy's `tcp-request connection reject if { src_conn_cur ge N }`): a
// connection from a client (address-key.ts: an IPv4 address, an IPv6 /64) that holds that many already is closed as it
// is accepted, before the bound looks at it, so one client reopening silent connections faster than the bound a second
// cannot take the place of every other (a quiet connection is closed for a new one only after MIN_QUIET_MS).
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
 * How long a connection must have been quiet to be closed for another, ms: a client sends its request as it connects
 * and its next as an answer ends, and a busy master reads them late.
 */
const MIN_QUIET_MS = 1_000;

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
  /** Closed as they were accepted, their client holding limits.maxClientConnectionsPerAddress already. */
  refusedPerAddress: number;
}

/** What the main server says of a connection it holds (main-server.ts). */
export interface HeldConnections {
  /**
   * No request in hand, nor a byte of one read since `sinceMs`: nothing since it was accepted (no request yet), or
   * since its last answer ended at `sinceMs` (the time given to noteQuiet).
   */
  isQuietSince(socket: Socket, sinceMs: number): boolean;
  /** Closes a quiet connection (gateway.ts closeIdle: a FIN though a worker holds a duplicate). */
  close(socket: Socket): void;
}

export interface ClientConnectionsOptions {
  /** limits.maxClientConnections: a fixed bound. Undefined: from fileLimit and the workers alive. */
  configured: number | undefined;
  /** limits.maxClientConnectionsPerAddress: connections one client holds at once; undefined, no such bound. */
  perAddress?: number | undefined;
  /** The master's open-file limit (file-limit.ts openFileLimit); undefined: none to read, and no bound. */
  fileLimit: number | undefined;
  maxIdleSocketsPerWorker: number;
  log: Logger;
  /** At most one warn line this often; default LOG_INTERVAL_MS (tests shorten it). */
  logIntervalMs?: number;
  /** The clock of MIN_QUIET_MS, ms; default performance.now (tests move it). */
  now?: () => number;
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
  #refusedPerAddress = 0;
  /** Connections open per client (addressKey), with perAddress. */
  readonly #byAddress = new Map<string, number>();
  /**
   * Connections within the bound as they became quiet, the longest quiet first (an index queue, with when each became
   * so): accepted, or at the end of an answer (noteQuiet). An entry whose connection has been busy since is stale,
   * dropped when met, and swept once they are half of it: where one to close at the bound is looked for.
   */
  #line: Array<Socket | undefined> = [];
  #lineSince: number[] = [];
  #lineHead = 0;
  #held: HeldConnections | undefined;
  /** Refusals and drops, as warn lines a burst at a time. */
  readonly #refusals: BurstLog<true>;
  readonly #overBound = new WeakSet<Socket>();
  /** One listener for every socket's close, not a closure each. */
  readonly #onWithinClose = (): void => {
    this.#within--;
    // Raised to the connections open (#apply), Node's cap comes down with them.
    if (this.#max !== undefined && this.#within >= this.#max) this.#apply();
  };

  constructor(options: ClientConnectionsOptions) {
    this.#options = options;
    this.#refusals = new BurstLog(options.logIntervalMs ?? LOG_INTERVAL_MS, (count) => this.#logRefusals(count));
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
      if (this.#options.perAddress !== undefined && !this.#admitFrom(socket, this.#options.perAddress)) return;
      if (this.#max === undefined) {
        this.#within++;
        socket.once('close', this.#onWithinClose);
        return;
      }
      const nowMs = this.#options.now?.() ?? performance.now();
      if (this.#within >= this.#max) {
        const quiet = this.#takeQuiet(nowMs);
        if (quiet === undefined) return this.#pastOne(socket);
        this.#closedIdle++;
        held!.close(quiet);
        this.#noteRefusal();
      }
      this.#within++;
      socket.once('close', this.#onWithinClose);
      this.#join(socket, nowMs);
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
      refusedPerAddress: this.#refusedPerAddress,
    };
  }

  /**
   * Counts a connection against its client's share, or closes it if that client holds `perAddress` already. One
   * closure a connection, only with that bound set.
   */
  #admitFrom(socket: Socket, perAddress: number): boolean {
    const address = socket.remoteAddress;
    if (address === undefined) return true; // gone already: its close comes next, and it is counted as any
    const key = addressKey(address);
    const held = this.#byAddress.get(key) ?? 0;
    if (held >= perAddress) {
      this.#refusedPerAddress++;
      socket.destroy();
      this.#noteRefusal();
      return false;
    }
    this.#byAddress.set(key, held + 1);
    socket.once('close', () => {
      const left = this.#byAddress.get(key)! - 1;
      if (left === 0) this.#byAddress.delete(key);
      else this.#byAddress.set(key, left);
    });
    return true;
  }

  /**
   * A connection within the bound became quiet at `sinceMs`: its last answer ended, nothing waiting (main-server.ts,
   * from the connection queue). Joins the line's end.
   */
  noteQuiet(socket: Socket, sinceMs: number): void {
    if (this.#max !== undefined && !this.#overBound.has(socket)) this.#join(socket, sinceMs);
  }

  #join(socket: Socket, sinceMs: number): void {
    this.#line.push(socket);
    this.#lineSince.push(sinceMs);
    if (this.#line.length - this.#lineHead > 2 * this.#within + 64) this.#sweep();
  }

  /** Still quiet since it joined the line at `sinceMs` (not closed, not busy since). */
  #isStillQuiet(socket: Socket, sinceMs: number): boolean {
    return !socket.destroyed && this.#held !== undefined && this.#held.isQuietSince(socket, sinceMs);
  }

  /**
   * The connection quiet longest, taken out of the line, if it has been for MIN_QUIET_MS; stale entries met on the way
   * are dropped (each entry is met once).
   */
  #takeQuiet(nowMs: number): Socket | undefined {
    const line = this.#line;
    while (this.#lineHead < line.length) {
      const at = this.#lineHead;
      const socket = line[at]!;
      const sinceMs = this.#lineSince[at]!;
      const isQuiet = this.#isStillQuiet(socket, sinceMs);
      if (isQuiet && nowMs - sinceMs < MIN_QUIET_MS) return undefined; // none has been quiet longer
      line[at] = undefined;
      this.#lineHead++;
      if (isQuiet) return socket;
    }
    return undefined;
  }

  /** The line without its stale entries (amortised: it runs once they are about half of it). */
  #sweep(): void {
    const line: Socket[] = [];
    const since: number[] = [];
    for (let i = this.#lineHead; i < this.#line.length; i++) {
      const socket = this.#line[i];
      if (socket !== undefined && this.#isStillQuiet(socket, this.#lineSince[i]!)) {
        line.push(socket);
        since.push(this.#lineSince[i]!);
      }
    }
    this.#line = line;
    this.#lineSince = since;
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
    this.#refusals.note(true);
  }

  #logRefusals(sinceLastLine: number): void {
    this.#options.log.warn(
      {
        maxClientConnections: this.#max,
        pastBound: this.#pastBound,
        dropped: this.#dropped,
        closedIdle: this.#closedIdle,
        refusedPerAddress: this.#refusedPerAddress,
        sinceLastLine,
      },
      'client connections at limits.maxClientConnections: idle ones are closed for new ones, else new ones are ' +
        'answered 503 too_many_connections, or closed; a client holding limits.maxClientConnectionsPerAddress has ' +
        'its new ones closed',
    );
  }
}
