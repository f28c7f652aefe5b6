import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { RssSampler } from '../../../scripts/loadtest/rss.js';

// A target that dies mid-run (the load-script probe): CPU was the group's sum in the last sample minus that in the
// first, so a process gone by the last sample dropped out and the CPU % came out negative.

// Burns CPU when it reads a line, says so, and exits at the next line.
const BURNER = `
const rl = require('node:readline').createInterface({ input: process.stdin });
let n = 0;
rl.on('line', () => {
  if (n++ > 0) process.exit(0);
  const end = process.cpuUsage().user + 100000;
  while (process.cpuUsage().user < end);
  process.stdout.write('burned\\n');
});
process.stdout.write('ready\\n');
`;

t.test('a process that exits inside the window keeps the CPU it used there; never negative', async (t) => {
  const child = spawn(process.execPath, ['-e', BURNER], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  child.stdout.setEncoding('utf8');
  const line = async (): Promise<string> => String((await once(child.stdout, 'data'))[0]).trim();
  t.equal(await line(), 'ready');
  // Only the samples taken here: the timer's period is far longer than the test.
  const sampler = new RssSampler({ pids: () => ({ target: [child.pid!] }), intervalMs: 600_000 });
  t.teardown(() => sampler.stop());
  child.stdin.write('burn\n');
  t.equal(await line(), 'burned');
  sampler.sample();
  const exited = once(child, 'exit');
  child.stdin.write('exit\n');
  await exited;
  const last = sampler.sample();
  t.ok(sampler.cpuPercent('target') > 0, `CPU % is positive: ${sampler.cpuPercent('target')}`);
  t.same(last.cpuByPid['target'], {}, 'the exited process is not in the last sample');
  t.ok(
    sampler.cpuMsBetween('target') >= 80,
    `the 100 ms of user time it burned are counted: ${sampler.cpuMsBetween('target')}`,
  );
});
