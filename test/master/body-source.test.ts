import { once } from 'node:events';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { BodySource } from '../../master/proxy.js';

// Issue 10: http-proxy-3 keeps its per-call options, this source among them, until the worker's
// response has ended, a stream's whole life. The source hands the body to the outgoing request and
// must not hold it after that. V8's gc(), exposed in this test process only, shows what is held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

t.test('the body source hands its body over once and then holds nothing', async (t) => {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  let body: Buffer | undefined = Buffer.alloc(1024 * 1024, 'c');
  // The Buffer and its memory: a slice kept somewhere would keep the ArrayBuffer alone.
  const held = [new WeakRef(body), new WeakRef(body.buffer)];
  const source = new BodySource(body);
  body = undefined;
  source.pipe(sink);
  await once(sink, 'finish');
  t.equal(Buffer.concat(chunks).toString(), 'c'.repeat(1024 * 1024), 'the whole body, once');
  chunks.length = 0;
  // A WeakRef's target lives until the end of the job that made it: collect in a later one.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  t.same(
    held.map((ref) => ref.deref()),
    [undefined, undefined],
    'collected while the source is still referenced',
  );
  t.type(source, BodySource); // the source stays reachable up to here
});

t.test('an empty body ends the request with nothing', async (t) => {
  let written = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      written += chunk.length;
      done();
    },
  });
  new BodySource(Buffer.alloc(0)).pipe(sink);
  await once(sink, 'finish');
  t.equal(written, 0);
});
