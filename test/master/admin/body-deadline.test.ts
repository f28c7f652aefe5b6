import t, { type Test } from 'tap';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readJsonBody } from '../../../master/admin/server.js';
import { isGraygateError } from '../../../shared/errors.js';

// An admin body has a deadline for the whole of it, not only for silences (an admin probe: a byte every 2 s never
// fell silent for 10 s, and 64 such connections, the admin port's bound, locked the admin API out as long as they
// liked).

async function serveReads(t: Test, deadlineMs: number): Promise<string> {
  const server = createServer((req: IncomingMessage, res) => {
    readJsonBody(req, deadlineMs).then(
      (body) => res.end(JSON.stringify({ body })),
      (err: unknown) => res.end(JSON.stringify({ code: isGraygateError(err) ? err.code : String(err) })),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

function answer(req: ReturnType<typeof request>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
  });
}

t.test('a body sent a byte at a time, never silent, is refused at its deadline', async (t) => {
  const url = await serveReads(t, 300);
  const req = request(url, { method: 'PUT', agent: false, headers: { 'content-length': 1000 } });
  const answered = answer(req);
  // The slow client: a byte every 20 ms, far inside the 10 s silence allowed, until the server answers.
  const drip = setInterval(() => req.write(' '), 20);
  t.teardown(() => {
    clearInterval(drip);
    req.destroy();
  });
  t.same(await answered, { code: 'body_timeout' });
});

t.test('a body sent in time is read', async (t) => {
  const url = await serveReads(t, 60_000);
  const req = request(url, { method: 'PUT', agent: false });
  const answered = answer(req);
  req.end('{"v1":3}');
  t.same(await answered, { body: { v1: 3 } });
});
