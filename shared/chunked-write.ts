import type { ServerResponse } from 'node:http';

// A streamed answer's body, one chunk per write (issue 10: the per-event hot path of both hops). node:http frames a
// chunk of a chunked response as four writes into its socket (the size line as a string, CRLF, the data, CRLF);
// corked, they reach the kernel as one writev, but only after each went through the socket's Writable queue and node
// copied the size line into a backing store of its own. Once the response's head is out, the same bytes framed into
// one Buffer go to the socket as one write: the syscall node makes, without the queue of four (measured under
// `compare --sse` loaded: -11 % of graygate's CPU an event relayed, where both hops write this way, -6 % with
// directStreams; docs/BENCHMARKS.md). Everything else goes through node:http's own write: the head (the first write),
// and every response node does not chunk (an HTTP/1.0 client, HEAD, 204 and 304: `chunkedEncoding` is false).

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
 * Writes `data` as the next chunk of `res`'s body. `isHeadOut`: an earlier call wrote to this response, so node:http
 * has put its head in the socket (the first call goes through `res.write`, which does). Returns what the write
 * returned; on false, wait for the **socket's** `drain` (`drainTarget`): node:http emits a response's own `drain`
 * only after a write of its own was refused.
 */
export function writeChunk(res: ServerResponse, data: Buffer, isHeadOut: boolean): boolean {
  const socket = res.socket;
  // An empty chunk framed would be the body's last chunk: node:http writes nothing for it.
  if (isHeadOut && res.chunkedEncoding && data.length > 0 && socket !== null && !socket.destroyed && !res.writableEnded)
    return socket.write(frameChunk(data));
  // Corked around the write: node:http frames the chunk into one writev now instead of scheduling a nextTick to
  // uncork (issue 10: no tick per event).
  socket?.cork();
  const isReady = res.write(data);
  socket?.uncork();
  return isReady;
}

/** Where to wait after `writeChunk` returned false: the response's socket (the response, before it has one). */
export function drainTarget(res: ServerResponse): NodeJS.EventEmitter {
  return res.socket ?? res;
}

/** Whether `res` is over its high-water mark: its socket's, once it has one (`writeChunk` writes there). */
export function isBehind(res: ServerResponse): boolean {
  const socket = res.socket;
  return socket !== null ? socket.writableNeedDrain : res.writableNeedDrain;
}
