import t from 'tap';
import { connect } from 'node:net';
import { admin, startGateway } from '../helpers/gateway.js';
import { canaryOf, status } from '../helpers/wait.js';
import type { CanaryStatus } from '../../master/canary/controller.js';
import { drive } from '../helpers/load.js';
import { startMockUpstream, BASE_PATHS } from '../../shared/mock-upstream/index.js';

// SPEC §11 and a probe as an SRE: a canary whose model streamed its tokens 12× slower after the same first token was
// promoted, judged on errors and its first token alone. The time per token (the mean time between a stream's content
// events after the first, which graygate's worker measures and tells the master at the stream's end: a trailer on
// the relayed path, the last control bytes on limits.directStreams) is judged as the other latencies are.

const FINAL = new Set(['promoted', 'rolled_back', 'aborted', 'held']);
const STREAM = JSON.stringify({
  model: 'graygate-mock',
  stream: true,
  messages: [{ role: 'user', content: 'hi' }],
});

/** One streamed call on a connection of its own, its raw bytes as the client receives them. */
function rawStream(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(STREAM)}\r\n\r\n${STREAM}`,
    );
  });
}

for (const directStreams of [false, true]) {
  t.test(
    `a canary that streams its tokens 20× slower after the same first token is rolled back${directStreams ? ' (limits.directStreams)' : ''}`,
    async (t) => {
      // The same first token on both (40 + 2 ms and 2 + 40 ms), then a token every 2 ms against one every 40 ms.
      const fast = await startMockUpstream({ defaults: { tokens: 5, firstByteMs: 40, intervalMs: 2 } });
      t.teardown(() => fast.close());
      const slow = await startMockUpstream({ defaults: { tokens: 5, firstByteMs: 2, intervalMs: 40 } });
      t.teardown(() => slow.close());
      const gw = await startGateway(t, {
        ...(directStreams ? { limits: { directStreams: true } } : {}),
        versions: {
          base: { weight: 100, upstream: { format: 'openai', url: fast.url + BASE_PATHS.openai } },
          slowtok: { weight: 0, upstream: { format: 'openai', url: slow.url + BASE_PATHS.openai } },
        },
        routing: { default: 'base' },
      });
      if (!directStreams) {
        // The worker's trailer is the master's: a client's stream ends with the last chunk and no trailer.
        const bytes = await rawStream(gw.url);
        t.ok(bytes.endsWith('data: [DONE]\n\n\r\n0\r\n\r\n'), 'the stream ends with the last chunk alone');
        t.notOk(/time-per-token/i.test(bytes), 'no trailer reaches the client');
      }
      const body = { steps: [50, 100], stepMs: 200, minRequests: 40, alpha: 0.1, criteria: { errorRate: false } };
      t.equal((await admin(gw, 'POST', '/admin/versions/slowtok/canary', body)).status, 202);
      let final: CanaryStatus | undefined;
      const load = await drive(gw.url, {
        path: () => '/v1/chat/completions',
        method: 'POST',
        body: STREAM,
        concurrency: 48,
        maxRequests: 8000,
        isDone: async () => {
          const c = await canaryOf(gw, 'slowtok');
          if (FINAL.has(c.state)) final = c;
          return final !== undefined;
        },
      });
      final ??= await canaryOf(gw, 'slowtok');
      t.equal(final.state, 'rolled_back', final.reason);
      t.ok(
        final.decisions.some((d) => d.metric === 'time_per_token_p99' && d.verdict === 'fail'),
        'the time-per-token test rejected',
      );
      t.notOk(
        final.decisions.some((d) => d.metric === 'first_token_p99' && d.verdict === 'fail'),
        'not the first token',
      );
      t.same([...load.byStatus.keys()], [200], 'every client request succeeded');
      t.equal(load.streamErrors, 0);
      t.equal((await status(gw)).slowtok!.weight, 0);
      t.equal(final.criteria?.timePerTokenP99 !== false, true, 'judged by default');
      t.comment(`rolled back after ${load.requests} requests: ${final.reason}`);
    },
  );
}
