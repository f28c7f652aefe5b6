import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { admin, configText, startGateway, TEST_WORKER_ENTRY, type GatewayConfigInput } from '../helpers/gateway.js';
import { createKubeletVolume } from '../helpers/kubelet-volume.js';
import { status, waitForStatus } from '../helpers/wait.js';
import { httpRequest } from '../helpers/http.js';
import { scrape } from '../helpers/metrics.js';
import { untilOutput, untilOutputHas } from '../helpers/output.js';
import { configHash } from '../../master/config-file.js';

// SPEC §13, issue 14 parts 3–5: a watched config file applies by itself —
// through kubelet's `..data` symlink swap, with no signal — an invalid one is
// refused and the old config keeps serving, and instances started from the
// same file agree on every routing decision and report the same hash.

function input(weights: { v1: number; v2: number }): GatewayConfigInput {
  return {
    versions: {
      v1: { entry: TEST_WORKER_ENTRY, weight: weights.v1 },
      v2: { entry: TEST_WORKER_ENTRY, weight: weights.v2 },
    },
    config: { watch: true },
  };
}

t.test('a kubelet-style ConfigMap swap applies with no signal; an invalid one is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-volume-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = configText(input({ v1: 90, v2: 10 }));
  const volume = createKubeletVolume(dir, { 'graygate.json': first });
  const gw = await startGateway(t, {} as GatewayConfigInput, {
    configPath: volume.path('graygate.json'),
    env: { LOG_LEVEL: 'info' },
  });
  t.equal(
    (await scrape(gw)).text.includes(`graygate_config_info{hash="${configHash(first)}"} 1`),
    true,
    'the started file’s hash',
  );

  const second = configText(input({ v1: 10, v2: 90 }));
  volume.update({ 'graygate.json': second });
  const after = await waitForStatus(gw, (v) => v.v2!.weight === 90, 'the swap applied new weights');
  t.equal(after.v1!.weight, 10);
  const metrics = await scrape(gw);
  t.ok(
    metrics.text.includes(`graygate_config_info{hash="${configHash(second)}"} 1`),
    'graygate_config_info follows the applied file',
  );
  t.notOk(metrics.text.includes(configHash(first)), 'one hash only');
  // One line per reload, whatever started it (a helper counted two per watched change).
  const reloadedLines = (): number => gw.output().match(/"msg":"config[^"]*reloaded"/g)?.length ?? 0;
  const refusedLines = (): number => gw.output().split('config file changed: refused').length - 1;
  await untilOutputHas(gw, '"msg":"config reloaded"');
  t.match(gw.output(), /"trigger":"watch"[^\n]*"msg":"config reloaded"/, 'saying the watch started it');

  volume.update({ 'graygate.json': '{ "versions": { "v1": { "weight": -1 } } ' });
  // The refusal is logged; wait for that line (the event), then check the old config serves.
  await untilOutputHas(gw, 'config file changed: refused');
  // Counted now, not when the first line came: a second line for that reload would have come before the watch
  // looked at the next change.
  t.equal(reloadedLines(), 1, 'the reload is logged once');
  const kept = await status(gw);
  t.same([kept.v1!.weight, kept.v2!.weight], [10, 90], 'the old weights still serve');
  // The hash alone could not tell pods that all refused a file from pods that applied it (an observability probe).
  const refused = (await scrape(gw)).text;
  t.match(refused, /\ngraygate_config_last_reload_successful 0\n/, 'the refusal in the metrics');
  const appliedAt = Number(/\ngraygate_config_last_reload_success_timestamp_seconds (\S+)\n/.exec(refused)?.[1]);
  t.ok(appliedAt > 1.7e9, `when a file last applied (${appliedAt})`);
  t.equal((await httpRequest(`${gw.url}/slow?ms=0`, { headers: { 'x-user-id': 'u1' } })).status, 200);

  // Unix ms before the valid file is written: the reload that applies it ends after (the same clock, this machine's).
  const writtenAtMs = Date.now();
  volume.update({ 'graygate.json': configText(input({ v1: 50, v2: 50 })) });
  await waitForStatus(gw, (v) => v.v1!.weight === 50, 'a valid file after the invalid one applies');
  await untilOutput(gw, () => (reloadedLines() === 2 ? true : undefined));
  const applied = (await scrape(gw)).text;
  t.match(applied, /\ngraygate_config_last_reload_successful 1\n/, 'applied again');
  const lastAt = Number(/\ngraygate_config_last_reload_success_timestamp_seconds (\S+)\n/.exec(applied)?.[1]);
  // It was `lastAt >= appliedAt`, which a timestamp left at the refused reload's predecessor also met.
  t.ok(
    lastAt * 1000 >= writtenAtMs,
    `its time is the reload's that applied the file (${lastAt} s, written ${writtenAtMs} ms)`,
  );
  t.equal(refusedLines(), 1, 'the refusal is logged once (counted once the next change is applied and logged)');
});

t.test('three gateways from the same config agree on 400 user keys and report the same hash', async (t) => {
  const text = configText(input({ v1: 70, v2: 30 }));
  const dir = mkdtempSync(join(tmpdir(), 'graygate-same-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const volume = createKubeletVolume(dir, { 'graygate.json': text });
  const gateways = await Promise.all(
    [0, 1, 2].map(() => startGateway(t, {} as GatewayConfigInput, { configPath: volume.path('graygate.json') })),
  );
  const hashes = await Promise.all(gateways.map((gw) => scrapeHash(gw)));
  const statusHashes = await Promise.all(
    gateways.map(async (gw) => (await admin<{ configHash: string }>(gw, 'GET', '/admin/status')).body.configHash),
  );
  t.same(hashes, [configHash(text), configHash(text), configHash(text)], 'graygate_config_info: one hash');
  t.same(statusHashes, hashes, 'and the same in /admin/status');
  let disagreements = 0;
  const counts = { v1: 0, v2: 0 };
  // Keep-alive agents and 25 keys at a time: 1,200 requests, not 1,200 connections one after another.
  const agents = gateways.map(() => new Agent({ keepAlive: true, maxSockets: 25 }));
  t.teardown(() => agents.forEach((a) => a.destroy()));
  const versionsOf = (i: number): Promise<Array<string | string[] | undefined>> =>
    Promise.all(
      gateways.map(
        async (gw, g) =>
          (await httpRequest(`${gw.url}/slow?ms=0`, { headers: { 'x-user-id': `user-${i}` }, agent: agents[g] }))
            .headers['x-graygate-version'],
      ),
    );
  for (let first = 0; first < 400; first += 25) {
    const batch = await Promise.all(Array.from({ length: 25 }, (_, k) => versionsOf(first + k)));
    for (const versions of batch) {
      if (new Set(versions).size !== 1) disagreements++;
      counts[versions[0] as 'v1' | 'v2']++;
    }
  }
  t.equal(disagreements, 0, 'every key lands on the same version on every instance');
  t.ok(counts.v1 > 240 && counts.v1 < 320, `the split follows the weights (${counts.v1}/${counts.v2})`);
});

async function scrapeHash(gw: Parameters<typeof scrape>[0]): Promise<string> {
  const match = /graygate_config_info\{hash="([0-9a-f]+)"\}/.exec((await scrape(gw)).text);
  return match?.[1] ?? 'none';
}

t.test('a reload turns config.watch on and off; the change is said, not ignored', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-volume-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const off = (weights: { v1: number; v2: number }): string =>
    configText({ ...input(weights), config: { watch: false } });
  const volume = createKubeletVolume(dir, { 'graygate.json': off({ v1: 90, v2: 10 }) });
  const gw = await startGateway(t, {} as GatewayConfigInput, {
    configPath: volume.path('graygate.json'),
    env: { LOG_LEVEL: 'info' },
  });

  volume.update({ 'graygate.json': configText(input({ v1: 90, v2: 10 })) });
  const on = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
  t.same(on.body.applied, ['config.watch on'], 'turned on by the reload');
  volume.update({ 'graygate.json': configText(input({ v1: 20, v2: 80 })) });
  await waitForStatus(gw, (v) => v.v2!.weight === 80, 'the next swap applies by itself');

  t.ok(inotifyWatches(gw.pid) > 0, 'the master watches the directory');
  volume.update({ 'graygate.json': off({ v1: 30, v2: 70 }) });
  await waitForStatus(gw, (v) => v.v2!.weight === 70, 'the swap that turns it off applies');
  await untilOutputHas(gw, '"msg":"config watch off"');
  // Off means no watch at all (the reload below would pass with one still there: it comes before any watch's look).
  t.equal(inotifyWatches(gw.pid), 0, 'and no more');
  volume.update({ 'graygate.json': off({ v1: 40, v2: 60 }) });
  const reloaded = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
  t.same(reloaded.body.applied, ['weights v1=40 v2=60'], 'the next file waited for a reload: the watch was off');
});

/** The inotify watches a process holds (Linux: /proc/PID/fdinfo of its inotify descriptors, one `inotify wd:` each). */
function inotifyWatches(pid: number): number {
  let watches = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target !== 'anon_inode:inotify') continue;
    watches += readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('inotify wd:')).length;
  }
  return watches;
}
