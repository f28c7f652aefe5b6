import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../shared/log.js';
import type { WorkerSettings } from '../shared/ipc.js';
import { GraygateError, toErrorResponse } from '../shared/errors.js';
import { sendError, sendJson } from '../shared/http-headers.js';
import { listModels } from './models.js';

export interface WorkerServerOptions {
  settings: WorkerSettings;
  log: Logger;
}

/** The worker's HTTP surface (SPEC §5): what clients reach through the master. */
export function createWorkerServer(options: WorkerServerOptions): Server {
  const { settings } = options;
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/v1/models') {
      if (req.method !== 'GET') return sendError(res, toErrorResponse(new GraygateError('method_not_allowed')));
      return sendJson(res, 200, listModels(settings));
    }
    sendError(res, toErrorResponse(new GraygateError('not_found', `no route for ${req.method} ${path}`)));
  });
}
