import t from 'tap';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleModels } from '../../../worker/models/models-handler.js';
import { ModelCatalog } from '../../../worker/models/model-catalog.js';
import type { ModelEntry } from '../../../worker/models/model-list.js';

// GET /v1/models from a real server on loopback, the catalog's fetch injected.

t.test("a cached list's JSON is made once, not for every request", async (t) => {
  // An amplification audit: a hostile upstream's 4 MiB of tiny entries were ~26 MB of answer, serialised again for
  // every GET /v1/models while cached (~190 ms of the worker's loop each). Counted, not timed: stringify calls.
  const models: ModelEntry[] = Array.from({ length: 1000 }, (_, i) => ({
    id: `m${i}`,
    object: 'model',
    created: 0,
    owned_by: 'o',
  }));
  const catalog = new ModelCatalog({ configuredModel: undefined, ownedBy: 'o', fetch: () => Promise.resolve(models) });
  const server = createServer((req, res) => handleModels(req, res, undefined, catalog));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const get = async (): Promise<string> => {
    const req = request({ port, host: '127.0.0.1', path: '/v1/models', headers: { 'x-graygate-version': 'v1' } });
    req.end();
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    let text = '';
    for await (const chunk of res) text += String(chunk);
    return text;
  };
  const stringify = JSON.stringify;
  let lists = 0;
  JSON.stringify = function (this: JSON, ...args: Parameters<typeof JSON.stringify>): string {
    if ((args[0] as { object?: unknown } | null)?.object === 'list') lists++;
    return stringify.apply(this, args);
  } as typeof JSON.stringify;
  t.teardown(() => void (JSON.stringify = stringify));
  const bodies = [await get(), await get(), await get()];
  JSON.stringify = stringify;
  t.equal(lists, 1, 'one serialisation for three requests');
  t.equal(new Set(bodies).size, 1, 'the same answer each time');
  t.equal((JSON.parse(bodies[0]!) as { data: ModelEntry[] }).data.length, 1000);
});
