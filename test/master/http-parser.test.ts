import t from 'tap';
import { request, validateHeaderName, validateHeaderValue } from 'node:http';
import { laxParserProblem, laxParserWarning } from '../../master/http-parser.js';

// Node 20 before 20.19.2 (llhttp 8) hands the master heads llhttp 9 refuses. The master then refuses what node's
// ClientRequest would throw on when forwarding (it answered 500 `internal_error` and kept the connection open, as the
// hop-pipelining e2e test shows when the suite runs on node 20.18.0); these cases hold it to node's own checks.

const throws = (fn: () => unknown): boolean => {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
};

t.test('header names and values: refused exactly where node would refuse to forward them', async (t) => {
  const names = ['x-version', 'Bad Header', 'Foo ', ' foo', 'a:b', 'x\u00ffy', 'x"y', "x'y", 'x~y', ''];
  const values = ['plain', 'tab\there', 'a\u0000b', 'a\u0001b', 'a\u007fb', 'caf\u00e9', '', 'a\rb', 'a\nb'];
  for (const name of names) {
    const refused = laxParserProblem([name, 'v'], '/') !== undefined;
    t.equal(
      refused,
      throws(() => validateHeaderName(name)),
      `name ${JSON.stringify(name)}`,
    );
  }
  for (const value of values) {
    const refused = laxParserProblem(['x', value], '/') !== undefined;
    t.equal(
      refused,
      throws(() => validateHeaderValue('x', value)),
      `value ${JSON.stringify(value)}`,
    );
  }
  t.match(laxParserProblem(['Host', 'gw', 'Bad Header', 'x'], '/'), /"Bad Header" is not a token/);
});

t.test('request targets: refused exactly where ClientRequest throws on the path', async (t) => {
  const targets = ['/v1/models?version=v2', '/a\tb', '/a b', '/caf\u00e9', '/\u0100', '/%20', '*'];
  for (const target of targets) {
    const refused = laxParserProblem([], target) !== undefined;
    const nodeRefuses = throws(() => {
      const req = request({ host: '127.0.0.1', port: 9, path: target });
      req.on('error', () => undefined);
      req.destroy();
    });
    t.equal(refused, nodeRefuses, `target ${JSON.stringify(target)}`);
  }
});

t.test('the start-up warning names the node and is only given for llhttp 8', async (t) => {
  const warning = laxParserWarning({ node: '20.18.0', llhttp: '8.1.2' });
  t.match(warning, /node 20\.18\.0's HTTP parser \(llhttp 8\.1\.2\)/);
  t.match(warning, /CVE-2025-23167/);
  t.match(warning, /20\.19\.2/);
  t.equal(laxParserWarning({ node: '20.20.2', llhttp: '9.3.1' }), undefined);
  t.equal(laxParserWarning({ node: '22.23.3', llhttp: '9.4.3' }), undefined);
});
