import { createRequire } from 'node:module';
import type * as NodeHttp from 'node:http';

// node:http's values for master, worker and mock, read with require(). Node 22 gives node:http three lazy getters
// (WebSocket, CloseEvent, MessageEvent) that load node's bundled undici with its fetch and web streams. An ES module
// `import … from 'node:http'` builds the module's namespace by reading every export, and so runs them, in master and
// every worker: ~10 MB of RSS in a bare node, ~7 MiB of an idle master and worker together (docs/BENCHMARKS.md,
// "node:http's namespace on Node 22").
// require() reads only the names taken here. Types still come from `import type … from 'node:http'` (erased).
// ESLint refuses a value import of node:http in master/, worker/, shared/ and scripts/cli/ (eslint.config.js).

const http = createRequire(import.meta.url)('node:http') as typeof NodeHttp;

export const { Agent, IncomingMessage, ServerResponse, STATUS_CODES, createServer, request } = http;
export type Agent = NodeHttp.Agent;
export type IncomingMessage = NodeHttp.IncomingMessage;
export type ServerResponse = NodeHttp.ServerResponse;

// node:http's own fields that graygate reads or sets: undocumented, and the same since node 0.x. Every place that
// touches them names them through these types, so one search finds them all when a node release changes them.

/** A response's: its head as built, whether that went to the socket, whether it has a body, whether it is the last. */
export interface OutgoingInternals {
  _header: string | null;
  _headerSent: boolean;
  _hasBody: boolean;
  _last: boolean;
}

/**
 * A server response's: its request said `Expect: 100-continue`. Node closes the connection after an answer that no
 * `100 Continue` came before, since the client may still send the body it held back.
 */
export interface ServerResponseInternals {
  _expect_continue?: boolean;
}

/** A socket's: the response node:http is writing to it, while there is one. */
export interface SocketInternals {
  _httpMessage?: unknown;
}

/**
 * An agent's: how a ClientRequest hands itself to its agent (`Agent#addRequest`, undocumented, the same since node
 * 0.x; agentkeepalive and others override it). Of `options`, an agent reads only what picks or opens a connection
 * (its `getName`, `createConnection`); node merges them with the agent's own options per request.
 */
export interface AgentInternals {
  addRequest(req: NodeHttp.ClientRequest, options: AgentConnectionOptions): void;
}

/** The request options an agent reads to pick or open a connection. */
export interface AgentConnectionOptions {
  host?: string | null;
  port?: number | string | null;
  socketPath?: string;
  localAddress?: string;
  family?: number;
  servername?: string;
}
