import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraygateError, isGraygateError, toErrorResponse, type ErrorCode } from '../shared/errors.js';
import { headerValue, sendError, sendJson, stripHopByHop } from '../shared/http-headers.js';
import type { Logger } from '../shared/log.js';
import type { Limits } from '../shared/config.js';
import { chooseVersion } from './router.js';
import { readRoutingFacts } from './request-facts.js';
import type { Supervisor } from './supervisor.js';
import type { WorkerProxy } from './proxy.js';
import type { MasterMetrics } from './metrics.js';
import type { Lease } from './admission.js';
import type { WorkerHandle } from './worker-handle.js';

// The main port's request path, as named steps applied in order (STYLE §17):
// health → route → admit → forward → log. Each step is a plain function.

export interface GatewayOptions {
  supervisor: Supervisor;
  proxy: WorkerProxy;
  log: Logger;
  metrics: MasterMetrics;
  /** True once SIGTERM arrived: answer 503 with `Connection: close`. */
  isClosing: () => boolean;
}

// x-request-id from the client is kept when it is a sane token (SPEC §3);
// anything else is replaced so logs and headers stay clean.
const REQUEST_ID = /^[A-Za-z0-9._:@\/+=-]{1,128}$/;

export function pickRequestId(sent: string | undefined, fresh: () => string): string {
  return sent !== undefined && REQUEST_ID.test(sent) ? sent : fresh();
}

export function createGatewayHandler(options: GatewayOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { supervisor, proxy, log, metrics, isClosing } = options;

  return function handle(req, res) {
    const startedAt = process.hrtime.bigint();
    const path = req.url ?? '/';
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const ready = supervisor.isReady && !isClosing();
      return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', versions: readiness(supervisor) });
    }

    const reqId = pickRequestId(headerValue(req.headers['x-request-id']), randomUUID);
    res.setHeader('x-request-id', reqId);
    let version: string | undefined;
    let workerPid: number | undefined;
    const socketBytesAtStart = req.socket.bytesWritten;

    res.once('close', () => {
      const durationMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
      const status = res.headersSent ? res.statusCode : 0; // 0: the client left before any answer
      metrics.onRequestDone(version ?? 'none', status);
      log.info(
        {
          reqId,
          version,
          method: req.method,
          // Without the query string: clients put keys there too (`?key=…`), and redact paths cannot reach inside a URL.
          path: path.split('?', 1)[0],
          status,
          durationMs: Math.round(durationMs * 100) / 100,
          bytesOut: req.socket === null ? undefined : req.socket.bytesWritten - socketBytesAtStart,
          workerPid,
          aborted: !res.writableFinished,
        },
        'request',
      );
    });

    const reject = (code: ErrorCode, message?: string, err?: GraygateError): void => {
      const e = err ?? new GraygateError(code, message);
      if (version !== undefined) metrics.observeHeaderLatency(version, Number(process.hrtime.bigint() - startedAt) / 1e9);
      if (version !== undefined && (code === 'queue_full' || code === 'queue_timeout' || code === 'no_ready_worker')) {
        metrics.onRejected(version, code);
      }
      // A refused body is not worth reading to its end: close the connection (nginx does the same on 413).
      sendError(res, toErrorResponse(e), isClosing() || code === 'body_too_large' ? { connection: 'close' } : {});
    };

    if (isClosing()) return reject('shutting_down');

    const routing = supervisor.config.routing;
    const factsResult = readRoutingFacts(path, req.headers, routing, randomUUID);
    if (!factsResult.ok) return reject('invalid_request', factsResult.message);
    const decision = chooseVersion(factsResult.facts, supervisor.routingTable);
    if (!decision.ok) return reject(decision.code, decision.message);
    version = decision.version;
    res.setHeader('x-graygate-version', version);
    if (decision.setCookie !== undefined) res.setHeader('set-cookie', decision.setCookie);

    const group = supervisor.versions.get(version);
    if (group === undefined) return reject('unknown_version', `unknown version "${version}"`);

    const limits: Limits = supervisor.config.limits;
    const declaredLength = Number(headerValue(req.headers['content-length']) ?? '0');
    if (declaredLength > limits.maxBodyBytes) {
      return reject('body_too_large', `request body is ${declaredLength} bytes, the limit is ${limits.maxBodyBytes}`);
    }

    req.url = factsResult.forwardPath;
    // Go's ReverseProxy order: drop hop-by-hop headers first, then add ours, so a
    // `Connection: x-request-id` from the client cannot remove them (SPEC §3).
    const hasUncountedBody = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] !== undefined;
    stripHopByHop(req.headers);
    // Node already answered `100 Continue`; forwarded, it would also hide the
    // request from http-proxy-3's proxyReq event and so from slot accounting.
    delete req.headers['expect'];
    req.headers['x-request-id'] = reqId;
    req.headers['x-graygate-version'] = version;

    const forward = (lease: Lease<WorkerHandle>): void => {
      workerPid = lease.worker.pid;
      proxy.forward(req, res, lease.worker, {
        onDone: () => lease.release(),
        onResponseHeaders: () => metrics.observeHeaderLatency(group.name, Number(process.hrtime.bigint() - startedAt) / 1e9),
        maxBodyBytes: limits.maxBodyBytes,
        hasUncountedBody,
        isClosing,
      });
    };

    // Fast path: a slot or a refusal at once, with no promise or signal (SPEC §4: 503 at once).
    const now = group.admission.tryAcquire();
    if (isGraygateError(now)) return reject(now.code, undefined, now);
    if (now !== undefined) return forward(now);

    // The client leaving while queued drops the wait at once (SPEC §4).
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new Error('client closed the connection'));
    });
    group.admission.wait(abort.signal).then(
      (lease) => {
        if (abort.signal.aborted) return lease.release();
        forward(lease);
      },
      (err: unknown) => {
        if (abort.signal.aborted) return; // nobody to answer
        if (isGraygateError(err)) return reject(err.code, undefined, err);
        log.error({ err, reqId }, 'admission failed');
        reject('internal_error');
      },
    );
  };
}

function readiness(supervisor: Supervisor): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const [name, group] of supervisor.versions) out[name] = group.hasReadyWorker;
  return out;
}
