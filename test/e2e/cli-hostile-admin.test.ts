import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { runCli } from '../helpers/cli.js';

// SPEC §7: whatever answers at --admin (a wrong port, another service, a broken proxy), the CLI ends with a non-zero
// exit and a one-line reason: it neither crashes nor prints what it was sent raw.

type Answer = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(t: Test, answer: Answer): Promise<string> {
  const server = createServer(answer).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('an endless answer is cut at a bound, with a one-line reason', async (t) => {
  let closed!: () => void;
  const gone = new Promise<void>((resolve) => (closed = resolve));
  const admin = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const write = (): void => {
      while (!res.destroyed && res.write(chunk));
    };
    res.on('drain', write);
    res.once('close', closed);
    write();
  });
  const run = await runCli(t, ['status', '--admin', admin]);
  t.equal(run.code, 1);
  t.match(
    run.stderr,
    /^graygate: http:\/\/127\.0\.0\.1:\d+ answered \/admin\/status with more than 64 MiB; is that the admin port\?\n$/,
  );
  t.notMatch(run.stderr, /heap|FATAL|\n {4}at /);
  await gone; // the CLI hung up rather than read on
});

t.test('JSON of another shape is a one-line reason, not a stack', async (t) => {
  // Three shapes, a CLI process each (the suite's CPU): none at all, no versions, a version of nothing.
  const answers = ['null', '{}', '{"versions":{"v1":null}}'];
  for (const body of answers) {
    const admin = await serve(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
    const run = await runCli(t, ['status', '--admin', admin]);
    t.equal(run.code, 1, `${body}: exit 1`);
    t.match(
      run.stderr,
      /^graygate: the admin API's answer is not what this CLI reads \([^\n]*\); is that graygate's admin port, of the same release\?\n$/,
      `${body}: one line`,
    );
  }
});

t.test("an answer's control characters are shown escaped, never sent to the terminal", async (t) => {
  const sneaky = 'x\u001b[2J\u001b]0;owned\u0007\rfake line\u009b31m';
  const refusing = await serve(t, (_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: `code${sneaky}`, message: `boom ${sneaky}` } }));
  });
  const refused = await runCli(t, ['status', '--admin', refusing]);
  t.equal(refused.code, 1);
  t.equal(
    refused.stderr,
    'graygate: 500 codex\\u001b[2J\\u001b]0;owned\\u0007\\u000dfake line\\u009b31m: ' +
      'boom x\\u001b[2J\\u001b]0;owned\\u0007\\u000dfake line\\u009b31m\n',
  );
  const status = {
    versions: {
      v1: {
        weight: 1,
        queued: 0,
        entry: `/srv/${sneaky}`,
        upstream: { format: 'openai', url: 'mock:' },
        workers: [],
        lastDeploy: null,
      },
    },
  };
  const answering = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(status));
  });
  const shown = await runCli(t, ['status', '--admin', answering]);
  t.equal(shown.code, 0);
  const controls = [...shown.stdout].filter((c) => c !== '\n' && /\p{Cc}/u.test(c));
  t.same(controls, [], 'no control character but newlines');
  t.match(shown.stdout, '/srv/x\\u001b[2J');
});

t.test('a /metrics line the CLI cannot read is quoted with its control characters escaped', async (t) => {
  const status = { versions: {} };
  const admin = await serve(t, (req, res) => {
    const isMetrics = req.url?.startsWith('/metrics') === true;
    res.writeHead(200, { 'content-type': isMetrics ? 'text/plain' : 'application/json' });
    res.end(isMetrics ? 'graygate_requests_total{version="v1" 5\u001b[2J\u0007\n' : JSON.stringify(status));
  });
  const run = await runCli(t, ['top', '--admin', admin, '--iterations', '1']);
  t.equal(run.code, 1);
  t.match(run.stderr, /not a Prometheus sample: .*5\\u001b\[2J\\u0007\n$/);
});
