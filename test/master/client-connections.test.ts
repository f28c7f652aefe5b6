import t from 'tap';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { ClientConnections } from '../../master/client-connections.js';
import { createLogger } from '../../shared/log.js';

// The main port's connection bound (master/client-connections.ts) on a real server: what is counted where, and the
// warn line of a burst of refusals, whose tail was written only at the next refusal (a review: hours later).

t.test('a burst of connections past the bound: one line at once, the rest when the interval ends', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  let onLine: (() => void) | undefined;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== ''))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      onLine?.();
      cb();
    },
  });
  const log = createLogger({ role: 'master', level: 'warn', destination: sink });
  const connections = new ClientConnections({
    configured: 1,
    fileLimit: undefined,
    maxIdleSocketsPerWorker: 0,
    log,
    logIntervalMs: 200,
  });
  const server = createServer((_req, res) => res.end('ok'));
  connections.watch(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sockets: Socket[] = [];
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const open = async (): Promise<Socket> => {
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    return socket;
  };
  const logged = (): number => lines.reduce((sum, l) => sum + (l['sinceLastLine'] as number), 0);
  const untilLogged = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (logged() >= n) resolve();
        else onLine = check;
      };
      check();
    });

  await open(); // within the bound of 1
  for (let i = 0; i < 3; i++) await open(); // past it
  await untilLogged(3);
  t.match(lines[0], { level: 40, sinceLastLine: 1, pastBound: 1, maxClientConnections: 1 }, 'the first at once');
  t.ok(lines.length >= 2, 'the rest of the burst in a line of its own when the interval ends, not at a next refusal');
  t.equal(logged(), 3, 'each refusal in one line');
  t.match(connections.status(), { open: 4, max: 1, pastBound: 3, dropped: 0 });
});
