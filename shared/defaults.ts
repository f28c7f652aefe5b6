// SPEC §2: the config file's defaults and the names both processes need, without the schema.
// A worker imports these and never shared/config.ts: zod, which only the master validates with,
// costs a process ~12 MB of RSS when loaded (issue 10 target 5).

export const VERSION_NAME = /^[a-z0-9][a-z0-9._-]{0,31}$/;

/** The longest delay a Node timer takes: a longer one fires after 1 ms (with a warning), not never. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** What node's HTTP server adds to its keepAliveTimeout when it arms a kept-alive socket's timer (Node 20 and 22). */
export const NODE_KEEP_ALIVE_BUFFER_MS = 1000;

/** Defaults with their units. Anything here can be overridden in the file. */
export const DEFAULTS = {
  listen: { host: '0.0.0.0', port: 8000 },
  admin: { host: '127.0.0.1', port: 9000 },
  routing: {
    query: 'version',
    header: 'x-version',
    stickyHeader: 'x-user-id',
    stickyCookie: 'graygate_uid',
    default: 'v1',
    unknownVersion: 'reject' as 'reject' | 'fallback',
  },
  limits: {
    maxSocketsPerWorker: 1024, // concurrent requests per worker, streams included
    maxIdleSocketsPerWorker: 64, // idle keep-alive sockets kept per worker (nginx `keepalive`)
    maxQueuePerVersion: 256, // requests waiting for a socket, per version
    queueTimeoutMs: 5000, // 5 s
    maxBodyBytes: 10 * 1024 * 1024, // 10 MiB
    shutdownTimeoutMs: 30_000, // 30 s
    // 10 min an old build's workers finish their requests after a deploy, rollback, reload or removal moved traffic
    // off them (SPEC §6: no request is cut by a swap): upstream.timeouts.totalMs's default, the longest a request
    // lives by its version's own timeouts (Envoy's --drain-time-s is 600 s; nginx waits for ever by default)
    drainTimeoutMs: 600_000,
    readyTimeoutMs: 15_000, // 15 s for a forked worker to report ready
    // SPEC §4a (turn 2): the client ↔ master ↔ worker hop
    bodyTimeoutMs: 30_000, // 30 s of silence while a client sends its body → 408 body_timeout
    // 60 s for a request's whole head, from its connection's opening or its first byte (nginx client_header_timeout)
    headTimeoutMs: 60_000,
    // 75 s an idle kept-alive client connection is held (nginx keepalive_timeout): longer than the idle timeouts of
    // the load balancers put in front (AWS ALB, nginx's upstream keepalive: 60 s), so a front never sends a request on
    // a connection the master is closing. Node's own 5 s made such races, and a POST lost in one is a front's 502.
    keepAliveTimeoutMs: 75_000,
    maxBufferedBodyBytes: 256 * 1024 * 1024, // 256 MiB of request bodies held by the master at once → 503 body_budget
    // 256 MiB of non-streamed answers a worker holds at once, each up to 64 MiB (open-call.ts) → 503 answer_budget
    maxBufferedAnswerBytes: 256 * 1024 * 1024,
    sendTimeoutMs: 60_000, // 60 s in which a client reads nothing of its answer → closed (nginx send_timeout)
    workerHeadersTimeoutMs: 30_000, // 30 s from sending to the worker's first response byte (a 102 ping counts) → 504
    // workerIdleTimeoutMs: no fixed default; 2 × the version's pingIntervalMs + 5000 ms (see workerIdleTimeoutMsFor)
    healthIntervalMs: 2000, // 2 s between IPC health probes of each worker
    healthMisses: 3, // probes missed in a row before a worker is killed and replaced
    maxHeaderBytes: 16 * 1024, // 16 KiB of request head (Node's default) → 431 headers_too_large
    maxUrlBytes: 8 * 1024, // 8 KiB request target (nginx's large_client_header_buffers) → 414 url_too_long
    maxPipelinedRequests: 32, // requests parsed ahead on one connection before the master stops reading it
    // maxClientConnections: no fixed default; what the open-file limit leaves (file-limit.ts clientConnectionsFor)
  },
  upstreamTimeouts: {
    connectMs: 10_000, // 10 s
    firstByteMs: 120_000, // 2 min: a slow model thinking before its first token is healthy
    idleMs: 120_000, // 2 min of silence between body bytes
    totalMs: 600_000, // 10 min for a whole answer
    // How long an idle upstream connection is kept. http: 4 s (undici's default), under the 5 s after which uvicorn
    // (vLLM), llama.cpp and Node close theirs: a request sent as the server closes is reset, and a POST is never sent
    // again (502). https: 30 s, a cloud API's front keeping them longer (nginx 75 s, AWS ALB 60 s), where a new
    // connection costs a TLS handshake on every call of a quiet version.
    keepAliveMs: 4000,
    keepAliveHttpsMs: 30_000,
  },
  maxEventBytes: 1024 * 1024, // 1 MiB per SSE line / NDJSON line
  pingIntervalMs: 15_000, // SSE `: ping` comment while the upstream is silent
} as const;

/**
 * Listen queue of the master's ports and the workers' sockets (issue 10): Node's default is 511,
 * and a burst of new connections beyond it is dropped by the kernel (SYN retried after 1 s, or
 * reset) while the loop accepts one per turn. 4096 is Linux's default somaxconn, which caps it.
 */
export const LISTEN_BACKLOG = 4096;

/**
 * Header lines Node keeps of a request head (its default `maxHeadersCount`); it drops the rest silently,
 * a Content-Length among them, though its parser frames the body by it. The master refuses a head that
 * reaches this many (master/gateway.ts) rather than forward a request whose framing it cannot see.
 */
export const MAX_HEADER_LINES = 2000;
