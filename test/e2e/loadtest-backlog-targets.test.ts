import t from 'tap';
import { smoke } from '../helpers/loadtest-smoke.js';

// backlog's fresh-connection target is about graygate's immediate refusal, queue_full (issue 10 target 4). With a
// queue that never fills, every fresh probe waits queueTimeoutMs and gets queue_timeout, by design: those latencies
// marked the target missed (the load-script probe). Now it is n/a, with a note saying why.

t.test('backlog without a queue_full answer: its fresh-connection target is n/a with a note', async (t) => {
  const report = await smoke(t, 'backlog', [
    '--duration',
    '2',
    '--connections',
    '5',
    '--worker-delay-ms',
    '1000',
    '--max-queue',
    '1000',
    '--queue-timeout-ms',
    '200',
    '--recovery-limit-s',
    '4',
  ]);
  const results = report.results as Array<{ fresh: { byStatus: Record<string, unknown> } }>;
  const byStatus = results[0]!.fresh.byStatus;
  t.ok(byStatus['503:queue_timeout'] !== undefined, 'fresh probes got queue_timeout', { byStatus });
  t.equal(byStatus['503:queue_full'], undefined, 'and no queue_full: the queue never filled');
  const target = (report.targets as Array<{ name: string; value: string; isMet: boolean | null }>).find((x) =>
    x.name.includes('queue_full 503 p99 on a fresh connection'),
  );
  t.match(target, { value: 'no queue_full 503s', isMet: null });
  t.match(report.notes.join('\n'), /queue_full target n\/a: no fresh connection was refused with queue_full/);
  // The table's count says its 503s are none of them queue_full, beside the "–" of their percentiles (a README probe
  // read 12 fresh 503s beside a "–").
  const table = report.tables[0]!;
  const cell = (header: string): string => String(table.rows[0]![table.headers.indexOf(header)]);
  t.match(cell('fresh 503s'), /^[1-9]\d* \(0 queue_full\)$/);
  t.equal(cell('fresh 503 p50 ms'), '–');
});
