import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { OutgoingInternals, SocketInternals } from './node-http.js';

// A streamed answer's body, one chunk per write (issue 10: the per-event hot path of both hops). node:http frames a
// chunk of a chunked response as four writes into its socket (the size line as a string, CRLF, the data, CRLF);
// corked, they reach the kernel as one writev, but only after each went through the socket's Writable queue and node
// copied the size line into a backing store of its own. Once the response's head is in its socket, the same bytes
// framed into one Buffer go to the socket as one write: the syscall node makes, without the queue of four (measured
// under `compare --sse` loaded, Node 20: -10 and -11 % of graygate's CPU an event relayed, where both hops write this
// way, -5 and -6 % with directStreams; docs/BENCHMARKS.md). Whether the head is out, the response has a body and is
// chunked, and owns its socket is read from node:http's own fields, as node:http's write reads them; anything else
// goes through node:http's write: the first chunk (the head goes with it), a response node buffers (a pipelined one
// without its socket yet), one without a body (HEAD, 204, 304), one node does not chunk (an HTTP/1.0 client that did
// not ask for it), and a chunk too large to copy cheaply. Never mixed with `res.cork()` (node would hold the chunks
// written while corked, and a chunk written here would pass them): graygate corks the socket only.

/** Above this a chunk goes through node:http's write (no copy); events are a few hundred bytes. */
const MAX_FRAMED_BYTES = 16 * 1024;
const CR = 0x0d;
const LF = 0x0a;

/** `data` as one chunk of a chunked body: size in hex, CRLF, the data, CRLF. */
export function frameChunk(data: Uint8Array): Buffer {
  const size = data.length.toString(16);
  // Pooled for small sizes (Buffer.poolSize / 2): an event's chunk costs a slice, not an allocation.
  const framed = Buffer.allocUnsafe(size.length + data.length + 4);
  let at = framed.write(size, 0, 'latin1');
  framed[at++] = CR;
  framed[at++] = LF;
  framed.set(data, at);
  at += data.length;
  framed[at++] = CR;
  framed[at] = LF;
  return framed;
}

/**
 * Writes `data` as the next chunk of `res`'s body, framed into one write to its socket when node:http has sent the
 * head of a chunked response with a body on a socket it owns, else through `res.write`. Returns what the write
 * returned; on false, wait for `drainTarget(res)`'s `drain` (node:http emits a response's own only after a write of
 * its own was refused).
 */
export function writeChunk(res: ServerResponse, data: Buffer): boolean {
  const framing = framingSocket(res, data);
  if (framing !== undefined) return framing.write(frameChunk(data));
  // Corked around the write: node:http frames the chunk into one writev now instead of scheduling a nextTick to
  // uncork (issue 10: no tick per event).
  const socket = res.socket;
  socket?.cork();
  const isReady = res.write(data);
  socket?.uncork();
  return isReady;
}

/** The socket to write `data` to framed, or undefined when node:http must write it (see above). */
function framingSocket(res: ServerResponse, data: Buffer): Socket | undefined {
  const state = res as ServerResponse & OutgoingInternals;
  const isFramed =
    state._headerSent === true &&
    state._hasBody === true &&
    res.chunkedEncoding &&
    !res.writableEnded &&
    // An empty chunk framed would end the body; node:http writes nothing for it.
    data.length > 0 &&
    data.length <= MAX_FRAMED_BYTES;
  if (!isFramed) return undefined;
  const socket = res.socket;
  return socket !== null && socket.writable && (socket as Socket & SocketInternals)._httpMessage === res
    ? socket
    : undefined;
}

/**
 * Where to wait after `writeChunk` returned false: the response's socket (the response, before it has one, or after
 * node:http let go of it: nothing writes to such a response any more).
 */
export function drainTarget(res: ServerResponse): NodeJS.EventEmitter {
  return res.socket ?? res;
}

/** Whether `res` is over its high-water mark: its socket's, once it has one (`writeChunk` writes there). */
export function isBehind(res: ServerResponse): boolean {
  const socket = res.socket;
  return socket !== null ? socket.writableNeedDrain : res.writableNeedDrain;
}
