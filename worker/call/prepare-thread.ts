import { parentPort, workerData } from 'node:worker_threads';
import { isGraygateError, serializeError } from '../../shared/errors.js';
import { loadAdapter } from '../upstream/load-adapter.js';
import {
  fromTransferred,
  prepareCall,
  toTransferable,
  type PrepareJob,
  type PrepareReply,
  type PrepareThreadData,
} from './prepare.js';

// Entry of the helper thread (call/preparer.ts): prepares one large request
// body at a time, so however long JSON.parse and JSON.stringify take, the
// worker's event loop keeps streaming. Jobs arrive before the adapter has
// loaded too: the port holds messages until the listener is attached.

const data = workerData as PrepareThreadData;
const adapter = await loadAdapter(data.format);
const port = parentPort!;
port.on('message', (job: PrepareJob) => {
  let reply: PrepareReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const call = prepareCall(job.kind, fromTransferred(job.body), adapter, data.build);
    const out = toTransferable(call.request.body);
    transfer = out.transfer;
    reply = {
      id: job.id,
      ok: true,
      path: call.request.path,
      headers: call.request.headers,
      body: out.bytes,
      model: call.request.model,
      isStream: call.isStream,
      includeUsage: call.includeUsage,
      encoding: call.encoding,
      choices: call.choices,
    };
  } catch (err) {
    const { code, message } = serializeError(err);
    const param = isGraygateError(err) ? err.param : undefined;
    reply = { id: job.id, ok: false, code, message, ...(param === undefined ? {} : { param }) };
  }
  port.postMessage(reply, transfer);
});
