import t from 'tap';
import { createServer, request, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { BytesRelay } from '../../../worker/relay/bytes-relay.js';

// A relayed answer's first bytes decide its status before it goes out (bytes-relay.ts): real sockets, one request per
// case, the relay driven as the pipeline drives it (body, flush, end, complete).

/** One request to a server whose handler is `handle`: the answer's status and body; the server closed after. */
async function serve(handle: (res: ServerResponse) => void): Promise<{ status: number; body: string }> {
  const server = createServer((_req, res: ServerResponse) => handle(res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    return await new Promise<{ status: number; body: string }>((resolve, reject) => {
      request({ port, host: '127.0.0.1' }, (incoming) => {
        const parts: Buffer[] = [];
        incoming.on('data', (c: Buffer) => parts.push(c));
        incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      })
        .on('error', reject)
        .end();
    });
  } finally {
    server.close();
  }
}

async function relay(chunks: Array<string | Buffer>): Promise<{ status: number; body: string } | { thrown: unknown }> {
  let thrown: unknown;
  const res = await serve((res) => {
    const r = new BytesRelay({ res, headers: {} });
    try {
      for (const chunk of chunks) {
        r.body(Buffer.from(chunk));
        r.flush();
      }
      r.end();
      r.complete();
    } catch (err) {
      thrown = err;
      res.writeHead(599).end();
    }
  });
  return thrown === undefined ? res : { thrown };
}

t.test('answers are relayed as they came, whitespace before them included; a byte-order mark dropped', async (t) => {
  t.same(await relay(['  \n', '{"data":[1]}']), { status: 200, body: '  \n{"data":[1]}' }, 'whitespace first, alone');
  // As a chat answer's (RFC 8259 §8.1: JSON sent on has none); an encoding probe: a strict client's parse failed on it.
  t.same(await relay(['\ufeff{"a":1}']), { status: 200, body: '{"a":1}' });
  const mark = Buffer.from('\ufeff');
  t.same(
    await relay([mark.subarray(0, 1), Buffer.concat([mark.subarray(1), Buffer.from('{"a":1}')])]),
    { status: 200, body: '{"a":1}' },
    'a byte-order mark split over two reads',
  );
  t.match(
    await relay(['\ufeff{"error":{"message":"Oops"}}']),
    { thrown: { code: 'upstream_status', message: 'Oops' } },
    "a 200's error after a mark is the upstream's error (it was relayed as an answer)",
  );
  t.same(await relay(['{"error":null,"data":[]}']), { status: 200, body: '{"error":null,"data":[]}' });
  t.same(await relay(['{"error":false,"data":[]}']), { status: 200, body: '{"error":false,"data":[]}' });
  t.same(await relay(['{"e', 'rror_rate":1}']), { status: 200, body: '{"error_rate":1}' }, 'not "error", split');
  t.same(await relay([' '.repeat(70_000), '{}']), { status: 200, body: `${' '.repeat(70_000)}{}` }, 'whitespace held');
  t.same(await relay([]), { status: 200, body: '' });
});

t.test('an error object is the upstream error; anything but an object is a protocol error', async (t) => {
  t.match(await relay(['{"err', 'or":{"message":"over', 'loaded"}}']), {
    thrown: { code: 'upstream_status', message: /overloaded/ },
  });
  t.match(await relay(['{\n  "error": {\n    "message": "pretty"\n  }\n}']), {
    thrown: { code: 'upstream_status', message: /pretty/ },
  });
  t.match(await relay(['\n', '<html>hi</html>']), {
    thrown: { code: 'upstream_protocol_error', message: /not a JSON object: "<html>hi<\/html>"/ },
  });
  t.match(await relay(['[1,2]']), { thrown: { code: 'upstream_protocol_error' } });
});

t.test('whitespace before the answer, a byte a read, is looked at once (not all of it again each read)', async (t) => {
  // A probe: each read concatenated everything held so far and read it again from its start, quadratic: 16,384 bytes
  // of whitespace a byte a read held the worker's loop 12.5 s. Counted as the bytes Buffer.concat copies (not timed).
  let copied = 0;
  const { body } = await serve((res) => {
    const r = new BytesRelay({ res, headers: {} });
    const original = Object.getOwnPropertyDescriptor(Buffer, 'concat')!;
    const concat = Buffer.concat.bind(Buffer);
    Buffer.concat = (list: readonly Uint8Array[], totalLength?: number): ReturnType<typeof concat> => {
      const joined = concat(list, totalLength);
      copied += joined.length;
      return joined;
    };
    try {
      for (let i = 0; i < 5000; i++) r.body(Buffer.from(i % 2 === 0 ? ' ' : '\n'));
      r.body(Buffer.from('{"data":[]}'));
    } finally {
      Object.defineProperty(Buffer, 'concat', original);
    }
    r.flush();
    r.end();
    r.complete();
  });
  t.equal(body.trimStart(), '{"data":[]}', 'relayed as it came');
  t.equal(body.length, 5000 + '{"data":[]}'.length);
  t.ok(copied <= 2 * 5011, `${copied} bytes copied`);
});

t.test("an upstream's small reads of one turn go out as one write, not one each", async (t) => {
  // A probe: an upstream's one-byte chunks were one-byte writes, each of which the master relays as a write of its
  // own (8.1 s of its CPU for 1 MiB). Writes counted, not timed.
  let writes = 0;
  const answer = `{"data":[${'1,'.repeat(2500)}2]}`;
  const { body } = await serve((res) => {
    const write = res.write.bind(res) as (chunk: Buffer) => boolean;
    res.write = ((chunk: Buffer) => {
      writes++;
      return write(chunk);
    }) as typeof res.write;
    const r = new BytesRelay({ res, headers: {} });
    for (const c of answer) {
      r.body(Buffer.from(c));
      r.flush();
    }
    setImmediate(() => {
      // A turn later, as the next upstream read would come.
      r.end();
      r.complete();
    });
  });
  t.equal(body, answer, 'relayed whole, in order');
  t.equal(writes, 1, `${answer.length} one-byte reads of one turn, one write`);
});
