import { Socket, type SocketConstructorOpts } from 'node:net';
import type { ServerResponse } from 'node:http';
import type { SocketInternals } from '../../shared/node-http.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): the client connections
// the master handed this worker (IPC `conn`), by the master's id. Each is a
// write-only socket around a duplicate descriptor: the master's parser reads
// the connection, this process only writes answers to it, one at a time.
// Closing one closes this process's duplicate only; the master ends the
// connection itself.

export class DirectConnections {
  readonly #sockets = new Map<number, Socket>();

  /** IPC `conn`: the descriptor of connection `id`. */
  add(id: number, handle: object): void {
    this.remove(id);
    // `handle` is a constructor option node has not typed (child_process uses it for received handles).
    const socket = new Socket({ handle, readable: false, writable: true } as SocketConstructorOpts);
    // The client left (EPIPE, reset): the master sees it too, and ends the request.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      if (this.#sockets.get(id) === socket) this.#sockets.delete(id);
    });
    this.#sockets.set(id, socket);
  }

  /** IPC `conn-close`: the master closed connection `id`. */
  remove(id: number): void {
    const socket = this.#sockets.get(id);
    this.#sockets.delete(id);
    socket?.destroy();
  }

  /**
   * The master is gone (its IPC channel closed): nothing reads these connections' requests any more. Those no answer
   * is being written to close now, so their clients see the connection end and open another (a restarted master's);
   * left open, a request sent on one waited unanswered until this process had drained and exited, up to 5 s with an
   * answer in flight (a probe), where with the option off the master's exit closed it at once. An answer in flight
   * goes on; its connection closes when this process exits.
   */
  closeIdle(): void {
    for (const id of [...this.#sockets.keys()]) if (this.writing(id) === undefined) this.remove(id);
  }

  /** Connection `id`, if this worker holds it and no answer is being written to it. */
  free(id: number): Socket | undefined {
    const socket = this.#sockets.get(id);
    if (socket === undefined || socket.destroyed || this.writing(id) !== undefined) return undefined;
    return socket;
  }

  /** The response being written to connection `id`, if any. */
  writing(id: number): ServerResponse | undefined {
    // node:http's own field: the response a socket is assigned to (assignSocket), null between answers.
    const socket = this.#sockets.get(id);
    const res = socket === undefined ? undefined : (socket as Socket & SocketInternals)._httpMessage;
    return res === null || res === undefined ? undefined : (res as ServerResponse);
  }

  get size(): number {
    return this.#sockets.size;
  }
}
