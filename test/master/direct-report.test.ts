import t from 'tap';
import { readDirectEnd } from '../../master/direct-report.js';

// limits.directStreams (shared/direct.ts): a direct answer's last control bytes, `(~U;)?E?=N`, as a case table.

t.test('readDirectEnd', async (t) => {
  const nan = { isFailed: false, bytes: 512, timePerTokenMs: NaN };
  const cases: Array<[string, ReturnType<typeof readDirectEnd>]> = [
    ['F..=512', nan],
    ['F.~21350;=512', { isFailed: false, bytes: 512, timePerTokenMs: 21.35 }],
    ['~0;=512', { isFailed: false, bytes: 512, timePerTokenMs: 0 }],
    ['F~21350;E=512', { isFailed: true, bytes: 512, timePerTokenMs: 21.35 }],
    ['FE=512', { isFailed: true, bytes: 512, timePerTokenMs: NaN }],
    ['~1800000000;=512', { isFailed: false, bytes: 512, timePerTokenMs: 1_800_000 }],
    ['~1800000001;=512', nan], // past the sketches' 30 min: none
    ['~12345678901234;=512', nan], // 14 digits: not a report of it (read as if absent)
    ['1350;=512', nan], // cut by the window: only what follows counts
    ['F..', undefined],
    ['F~21350;', undefined],
    ['', undefined],
  ];
  for (const [control, expected] of cases) t.same(readDirectEnd(control), expected, JSON.stringify(control));
});
