import t from 'tap';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';
import { startGateway } from '../helpers/gateway.js';
import { waitForStatus } from '../helpers/wait.js';

// A Responses stream whose worker dies mid-stream (a review): the master's own final event is the Responses API's
// error event, numbered after the last event relayed, as the worker's is, not the chat shape `{"error": …}` a
// Responses client (the AI SDK validates every event's type) cannot read as the API's error.

for (const { name, pingIntervalMs, isDeathDue } of [
  {
    name: "a worker dying mid-Responses-stream: the master's error event in the Responses shape",
    pingIntervalMs: 15_000,
    isDeathDue: (text: string) => deltas(text) === 3,
  },
  {
    // A review: the master numbered its event from the last read alone, and a `: ping` has no number: it said 0.
    name: "a worker dying after a ping, the upstream quiet: the master's error event numbered after the last event",
    pingIntervalMs: 200,
    isDeathDue: (text: string) => deltas(text) === 3 && /output_text\.delta"[^]*\n: ping\n\n$/.test(text),
  },
]) {
  t.test(name, async (t) => {
    const gw = await startGateway(t, {
      versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'mock:', pingIntervalMs } } },
    });
    const { pid } = (await waitForStatus(gw, (v) => v.v1!.workers[0]?.state === 'ready', 'worker ready')).v1!
      .workers[0]!;
    const body = JSON.stringify({ model: 'm', input: 'hi [mock tokens=20 fault=stall after=3]', stream: true });
    const req = request(`${gw.url}/v1/responses`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.end(body);
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    t.equal(res.statusCode, 200);
    let text = '';
    res.setEncoding('utf8');
    const ended = once(res, 'end');
    // Three deltas relayed (the upstream then stalls), and the events before them (and a ping): then the worker dies.
    await new Promise<void>((resolve) => {
      res.on('data', (chunk: string) => {
        text += chunk;
        if (isDeathDue(text)) resolve();
      });
    });
    process.kill(pid, 'SIGKILL');
    await ended;
    const events = text
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
    const last = events.at(-1)!;
    t.match(last, { type: 'error', code: 'worker_error', param: null });
    t.equal(last['sequence_number'], (events.at(-2)!['sequence_number'] as number) + 1, 'numbered after the last');
    t.match(text, /event: error\ndata: \{"type":"error"/);
  });
}

function deltas(text: string): number {
  return (text.match(/"type":"response\.output_text\.delta"/g) ?? []).length;
}
