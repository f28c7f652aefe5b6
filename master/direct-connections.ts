import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { OutgoingInternals } from '../shared/node-http.js';
import type { RequestContext } from './request-context.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): one hop for streamed
// answers. The master parses, routes, admits and forwards each request as
// always, and offers the worker the client's connection: a duplicate of its
// descriptor goes to the worker process over IPC, once per connection and
// process, and the request names it (`x-graygate-direct`). A worker that
// streams its answer writes it straight to the client and answers the master
// with a few control bytes (shared/direct.ts); the master never sees a token.
// Its parser keeps the connection: when the worker is done, the master ends its
// own response without writing a byte and reads the next request.

/** What the master needs of a worker process to offer it connections (worker-handle.ts: one handle, one process). */
export interface ConnectionHolder {
  /** `onSettled(true)`: the duplicate arrived; `(false)`: it was lost, and the worker holds nothing. */
  offerConnection(id: number, socket: Socket, onSettled: (isTaken: boolean) => void): boolean;
  closeConnection(id: number): void;
}

interface Offered {
  id: number;
  /**
   * Worker processes holding a duplicate: their handles, each one process's (a restarted worker is a new handle, with
   * none). Not their pids: a pid is reused once its process is gone, and a new worker that got a holder's old pid must
   * not be taken for the holder.
   */
  holders: Set<ConnectionHolder>;
  /** Of those, the ones whose duplicate has arrived (IPC `conn-taken`): requests can go to them as IPC calls. */
  taken: Set<ConnectionHolder>;
  /** Whether a worker is one of the holders: admission's preference (admission.ts), made once per connection. */
  isHolder: (worker: ConnectionHolder) => boolean;
}

/** The libuv handle behind a net.Socket: what child_process sends (SCM_RIGHTS). */
interface WithHandle {
  _handle: object | null;
}

export class DirectConnections {
  readonly #offered = new WeakMap<Socket, Offered>();
  #nextId = 0;

  /**
   * Whether a worker holds a duplicate of `socket` (or is receiving one); undefined for a connection never offered.
   * One function per connection, so a request allocates nothing to ask.
   */
  holderTest(socket: Socket): Offered['isHolder'] | undefined {
    return this.#offered.get(socket)?.isHolder;
  }

  /**
   * The id under which `worker` holds the client connection of `ctx`, sending it a duplicate first if it has none;
   * undefined when this request cannot be answered directly: not HTTP/1.1, or bytes of the master's still unsent on
   * the connection (a `100 Continue`), or the worker cannot take a descriptor now. `isTaken`: the duplicate is there
   * (the request can go as an IPC call); else it is on its way, and only a streamed answer may find it in time.
   */
  offer(ctx: Pick<RequestContext, 'req'>, worker: ConnectionHolder): { conn: number; isTaken: boolean } | undefined {
    const { req } = ctx;
    const socket = req.socket;
    const handle = (socket as Socket & WithHandle)._handle;
    if (req.httpVersion !== '1.1' || handle === null) return undefined;
    if (socket.destroyed || socket.writableLength > 0) return undefined;
    let offered = this.#offered.get(socket);
    if (offered === undefined) {
      const holders = new Set<ConnectionHolder>();
      offered = {
        id: ++this.#nextId,
        holders,
        taken: new Set(),
        isHolder: (w) => holders.has(w),
      };
      this.#offered.set(socket, offered);
      const closing = offered;
      // A duplicate keeps the connection open after the master's own descriptor is closed: every holder lets go.
      socket.once('close', () => {
        for (const holder of closing.holders) holder.closeConnection(closing.id);
        closing.holders.clear();
        closing.taken.clear();
      });
    }
    if (!offered.holders.has(worker)) {
      // Sent in turn (worker-handle.ts): until it arrives, the worker answers this connection through the master.
      // A lost one is offered again with the connection's next request.
      const taking = offered;
      const onSettled = (isTaken: boolean): void => {
        if (socket.destroyed) return;
        if (isTaken) taking.taken.add(worker);
        else taking.holders.delete(worker);
      };
      if (!worker.offerConnection(offered.id, socket, onSettled)) return undefined;
      offered.holders.add(worker);
    }
    return { conn: offered.id, isTaken: offered.taken.has(worker) };
  }

  /**
   * The main server's keep-alive timeout on an idle connection (node's own handling destroys it): one a worker holds a
   * duplicate of is shut down first. Destroyed alone, it stayed open under the duplicate until that worker closed it,
   * which a stopped or busy worker does not do (a probe: no FIN at keepAliveTimeoutMs, a request sent then never
   * answered, then a reset); with the option off the client had its FIN.
   */
  closeIdle(socket: Socket): void {
    if (this.#offered.has(socket)) shutDown(socket);
    else socket.destroy();
  }
}

/**
 * Ends the master's response to a request the worker answered directly, without writing a byte. The server then reads
 * the connection's next request as after any answer (only connections it keeps are offered), or, `isLast`, closes
 * it after the answer (FIN), as after one that said `Connection: close`.
 */
export function endUnwritten(res: ServerResponse, statusCode: number, isLast = false): void {
  // node:http's own fields, set so that end() writes nothing: the worker wrote the whole answer.
  const r = res as ServerResponse & OutgoingInternals;
  res.statusCode = statusCode;
  r._header = `HTTP/1.1 ${statusCode} (written by the worker)\r\n\r\n`;
  r._headerSent = true;
  r._hasBody = false;
  r._last = isLast;
  res.end();
}

/**
 * A direct answer that cannot be finished: where the worker's chunked framing stands is unknown to the master, so
 * no error event can be appended (SPEC §4 allows the reset for a worker that dies mid-stream). The connection is
 * shut down (FIN now, whatever duplicate the worker still holds), then closed.
 */
export function cutDirect(ctx: RequestContext): void {
  shutDown(ctx.req.socket);
}

/** FIN now, whatever duplicate a worker still holds, then the master's descriptor closed. */
function shutDown(socket: Socket): void {
  if (socket.destroyed) return;
  if (!socket.writable) return void socket.destroy();
  socket.once('finish', () => socket.destroy());
  socket.end();
}
