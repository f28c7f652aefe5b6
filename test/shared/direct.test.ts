import t from 'tap';
import { randomBytes } from 'node:crypto';
import { decodeBody, encodeBody } from '../../shared/direct.js';

// limits.directStreams: a request body crosses the IPC channel (JSON) inside a `call` message; whatever its bytes,
// the worker must get exactly the ones the master read.

const roundTrip = (body: Buffer): Buffer => decodeBody(JSON.parse(JSON.stringify(encodeBody(body))) as never);

t.test('UTF-8 bodies travel as text, and come back byte for byte', async (t) => {
  for (const text of ['', '{"messages":[{"role":"user","content":"hi"}]}', 'héllo ✓ 𝄞 \u2028 "\\" \u0000']) {
    const body = Buffer.from(text, 'utf8');
    t.equal(encodeBody(body).binary, false, body.toString('hex'));
    t.same(roundTrip(body), body);
  }
});

t.test('bodies that are not UTF-8 travel as base64, and come back byte for byte', async (t) => {
  const cases = [Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xff])];
  for (let i = 0; i < 200; i++) cases.push(randomBytes(1 + (i % 64)));
  for (const body of cases) t.same(roundTrip(body), body, body.toString('hex'));
  t.equal(encodeBody(cases[0]!).binary, true, 'a lone latin1 byte is not UTF-8');
  t.equal(encodeBody(cases[1]!).binary, true, 'nor is a UTF-16 surrogate encoded as UTF-8');
});
