import type { ServerResponse } from 'node:http';
import type { Disposer } from '../../shared/abort.js';
import { directAnswerOf } from '../direct/direct-answer.js';

// A non-streamed answer says nothing until the upstream is done, which for a
// long completion can be minutes, and a stream nothing until the upstream's
// head, which a model loading or a queue can hold as long (up to
// timeouts.firstByteMs); the master gives a worker
// limits.workerHeadersTimeoutMs (30 s) from request to first response byte,
// and counts each `102 Processing` (RFC 2518 §10.1, an informational answer
// HTTP/1.1 clients skip) as a sign of life (SPEC §4a). So while the answer is
// pending, one goes out every `intervalMs` (a third of that wait; not the
// client's `: ping` period, which may be off or longer), until the response
// head is written. The master does not pass them on.

/** Starts the pings; the disposer stops them (the head going out also does). `intervalMs` 0: none. */
export function startProcessingPings(res: ServerResponse, intervalMs: number): Disposer {
  // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client. An IPC call's response is the client's own, and its heartbeats
  // keep the master's timer (direct-answer.ts): a 102 would reach the client.
  if (intervalMs <= 0 || (res.req.httpVersionMajor === 1 && res.req.httpVersionMinor === 0)) return () => undefined;
  if (directAnswerOf(res) !== undefined) return () => undefined;
  const timer = setInterval(() => {
    if (res.headersSent || res.destroyed) return clearInterval(timer);
    res.writeProcessing();
  }, intervalMs);
  return () => clearInterval(timer);
}
