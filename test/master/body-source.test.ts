import { once } from 'node:events';
import { Writable } from 'node:stream';
import t from 'tap';
import { BodySource } from '../../master/proxy.js';
import { isCollected, watch } from '../helpers/gc.js';

// Issue 10: http-proxy-3 keeps its per-call options, this source among them, until the worker's
// response has ended, a stream's whole life. The source hands the body to the outgoing request and
// must not hold it after that.

/** Pipes `source` into a sink; resolves with what arrived once the sink has finished. */
async function drain(source: BodySource): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  source.pipe(sink);
  await once(sink, 'finish');
  return Buffer.concat(chunks);
}

t.test('the body source hands its body over once and then holds nothing', async (t) => {
  let body: Buffer | undefined = Buffer.alloc(1024 * 1024, 'c');
  const refs = watch(body);
  const source = new BodySource(body);
  body = undefined;
  t.equal((await drain(source)).toString(), 'c'.repeat(1024 * 1024), 'the whole body, once');
  t.ok(await isCollected(refs), 'collected while the source is still referenced');
  t.type(source, BodySource); // the source stays reachable up to here
});

t.test('an empty body ends the request with nothing', async (t) => {
  t.equal((await drain(new BodySource(Buffer.alloc(0)))).length, 0);
});
