import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Operations, type ReloadTrigger } from '../../../master/admin/operations.js';
import type { CanaryManager } from '../../../master/canary/manager.js';
import { configHash, loadConfig } from '../../../master/config-file.js';
import type { ReloadPlan } from '../../../master/reload-plan.js';
import type { ReloadApplied, VersionRegistry } from '../../../master/version-registry.js';
import { createLogger } from '../../../shared/log.js';

// Reloads asked for while one runs (master/admin/operations.ts #start): they run once more afterwards. A probe's
// repro: POST /admin/reload and the config watch saw one file change; the watch's reload waited for the admin one,
// which had applied that file and was draining an old build, and then applied it again, undoing a PUT /admin/weights
// answered 200 meanwhile (and aborting the canaries started since). The registry here is a stand-in that counts the
// reloads applied and holds each one (its drain) until the test lets it end.

function configFile(t: Test, weights: { v1: number; v2: number }): { path: string; text: string } {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const text = JSON.stringify({
    versions: {
      v1: { entry: 'dist/test/fixtures/test-worker.js', weight: weights.v1 },
      v2: { entry: 'dist/test/fixtures/test-worker.js', weight: weights.v2 },
    },
  });
  const path = join(dir, 'graygate.json');
  writeFileSync(path, text);
  return { path, text };
}

interface Harness {
  operations: Operations;
  /** Reloads the registry was asked to apply (each commits at once, then drains until `endDrain`). */
  applied: () => number;
  /** Ends the drain of the reload applied last. */
  endDrain: () => void;
  /** Resolves when the registry is next asked to apply a reload. */
  nextApply: () => Promise<void>;
  /** Canary aborts the reloads made. */
  aborts: () => number;
  logLines: () => string[];
}

function harness(t: Test, path: string, startedHash: string, env: NodeJS.ProcessEnv = {}): Harness {
  const loaded = loadConfig(path, {});
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  let applied = 0;
  let aborts = 0;
  let endDrain: () => void = () => undefined;
  let onApply: (() => void) | undefined;
  const registry = {
    config: loaded.value,
    versions: new Map(),
    applyReload(_plan: ReloadPlan, options: { onCommit: () => void }): Promise<ReloadApplied> {
      applied++;
      onApply?.();
      onApply = undefined;
      options.onCommit();
      return new Promise((resolve) => {
        endDrain = () => resolve({ added: [], deployed: [], removed: [], weights: {}, pairs: [] });
      });
    },
  };
  const canaries = {
    abortAll: () => {
      aborts++;
      return [];
    },
  };
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'));
      callback();
    },
  });
  const operations = new Operations({
    registry: registry as unknown as VersionRegistry,
    canaries: canaries as unknown as CanaryManager,
    log: createLogger({ role: 'master', level: 'info', destination }),
    configPath: path,
    env,
    configHash: startedHash,
  });
  t.teardown(() => endDrain());
  return {
    operations,
    applied: () => applied,
    endDrain: () => endDrain(),
    nextApply: () => new Promise((resolve) => (onApply = resolve)),
    aborts: () => aborts,
    logLines: () => lines,
  };
}

t.test('a watch reload that waited for a reload of the same file applies nothing again', async (t) => {
  const file = configFile(t, { v1: 60, v2: 40 });
  const h = harness(t, file.path, 'started-with');
  const first = h.operations.reload('admin');
  const queued = h.operations.reload('watch');
  t.equal(h.applied(), 1, 'the admin reload applied the file (and drains)');
  t.equal(h.operations.configHash, configHash(file.text));
  h.endDrain();
  t.same((await first).applied, []);
  const result = await queued;
  t.equal(h.applied(), 1, 'not applied again: what changed since the first commit stays');
  t.equal(h.aborts(), 1, 'canaries started since the first commit are not aborted');
  t.same(result, { hash: configHash(file.text), applied: [], restartRequired: [], warnings: [] });
  t.match(h.logLines().join(''), /"trigger":"watch"[^\n]*applied by the reload before this one, nothing to do/);
});

t.test('a queued reload applies when the file changed again, or when an operator asked for it', async (t) => {
  const cases: Array<[string, ReloadTrigger[], boolean]> = [
    ['the watch, the file changed meanwhile', ['watch'], true],
    ['POST /admin/reload, same file', ['admin'], false],
    ['SIGHUP, same file', ['SIGHUP'], false],
    ['the watch and an admin call coalesced, same file', ['watch', 'admin'], false],
  ];
  for (const [name, triggers, isRewritten] of cases) {
    const file = configFile(t, { v1: 60, v2: 40 });
    const h = harness(t, file.path, 'started-with');
    const first = h.operations.reload('admin');
    const queued = triggers.map((trigger) => h.operations.reload(trigger));
    if (isRewritten) writeFileSync(file.path, file.text.replace('60', '61'));
    const again = h.nextApply();
    h.endDrain();
    await first;
    await again;
    h.endDrain();
    await Promise.all(queued);
    t.equal(h.applied(), 2, `${name}: applied again, once`);
  }
});

t.test(
  'a reload whose versions ping less often than the idle timeout waits says so, in its answer and a warn line',
  async (t) => {
    // A probe: only the start's config was looked at (config.ts idleTimeoutWarnings); a reload was silent.
    const dir = mkdtempSync(join(tmpdir(), 'graygate-ops-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'graygate.json');
    const entry = 'dist/test/fixtures/test-worker.js';
    writeFileSync(
      path,
      JSON.stringify({
        limits: { workerIdleTimeoutMs: 20_000 },
        versions: {
          v1: { entry, weight: 1 },
          v2: { entry, weight: 1, upstream: { format: 'openai', url: 'mock:', pingIntervalMs: 25_000 } },
        },
      }),
    );
    const h = harness(t, path, 'started-with');
    const reloaded = h.operations.reload('admin');
    h.endDrain();
    const warning =
      "limits.workerIdleTimeoutMs (20000 ms) is not above version v2's upstream.pingIntervalMs (25000 ms): its " +
      'streams that wait longer than that for a token are cut';
    t.same((await reloaded).warnings, [warning], 'v1 pings every 15 s: not named');
    t.ok(
      h.logLines().some((line) => line.includes('"level":40') && line.includes(warning)),
      'a warn line',
    );
  },
);

t.test('a secret variable a version names and nothing sets: a warning in the answer and a warn line', async (t) => {
  // A README probe: a version whose apiKeyEnv named an unset variable started without a word, and its calls went to
  // the upstream without a key (its 401 the first sign). Set in the master's environment or the version's own `env`:
  // no warning; unset or empty: one, naming the variable, never a value.
  const dir = mkdtempSync(join(tmpdir(), 'graygate-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'graygate.json');
  const entry = 'dist/test/fixtures/test-worker.js';
  const upstream = (fields: Record<string, string>): Record<string, string> => ({
    format: 'openai',
    url: 'https://api.example.com/v1',
    ...fields,
  });
  writeFileSync(
    path,
    JSON.stringify({
      routing: { default: 'set' },
      admin: { redactEnv: ['GG_REDACTED_KEY'] },
      versions: {
        set: { entry, weight: 1, upstream: upstream({ apiKeyEnv: 'GG_SET_KEY' }) },
        own: { entry, weight: 1, upstream: upstream({ apiKeyEnv: 'GG_OWN_KEY' }), env: { GG_OWN_KEY: 'k' } },
        unset: { entry, weight: 1, upstream: upstream({ apiKeyEnv: 'GG_UNSET_KEY' }) },
        proxied: {
          entry,
          weight: 1,
          upstream: upstream({ proxy: 'http://127.0.0.1:3128', proxyAuthEnv: 'GG_EMPTY_PROXY_AUTH' }),
        },
        // Set in both, but admin.redactEnv keeps it from every worker, the version's own `env` notwithstanding.
        redacted: {
          entry,
          weight: 1,
          upstream: upstream({ apiKeyEnv: 'GG_REDACTED_KEY' }),
          env: { GG_REDACTED_KEY: 'own-redacted' },
        },
      },
    }),
  );
  const h = harness(t, path, 'started-with', {
    GG_SET_KEY: 'secret-set',
    GG_EMPTY_PROXY_AUTH: '',
    GG_REDACTED_KEY: 'secret-redacted',
  });
  const reloaded = h.operations.reload('admin');
  h.endDrain();
  const warnings = [
    "version unset's upstream.apiKeyEnv names GG_UNSET_KEY, which is not set: its calls go to the upstream without a " +
      'key',
    "version proxied's upstream.proxyAuthEnv names GG_EMPTY_PROXY_AUTH, which is not set: its calls go to the proxy " +
      'without credentials',
    "version redacted's upstream.apiKeyEnv names GG_REDACTED_KEY, which no worker inherits (admin.redactEnv): its " +
      'calls go to the upstream without a key',
  ];
  t.same((await reloaded).warnings, warnings);
  for (const warning of warnings) {
    t.ok(
      h.logLines().some((line) => line.includes('"level":40') && line.includes(warning)),
      'a warn line',
    );
  }
  for (const value of ['secret-set', 'secret-redacted', 'own-redacted']) {
    t.notOk(h.logLines().join('').includes(value), 'no value in any line');
  }
});

t.test('a reload is checked against the running maxSocketsPerWorker, not the limits its file would set', async (t) => {
  // A review: limits take a restart, so a file lowering maxSocketsPerWorker to 8 passed its own check with an upstream
  // of 8 connections behind workers that still admit 1024 each: the hidden queue an add or a deploy refuses.
  const dir = mkdtempSync(join(tmpdir(), 'graygate-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'graygate.json');
  const entry = 'dist/test/fixtures/test-worker.js';
  const write = (limits: object, maxConnections?: number): void =>
    writeFileSync(
      path,
      JSON.stringify({
        limits,
        versions: {
          v1: { entry, weight: 1 },
          v2: { entry, weight: 1, upstream: { format: 'openai', url: 'mock:', maxConnections } },
        },
      }),
    );
  write({});
  const h = harness(t, path, 'started-with');
  write({ maxSocketsPerWorker: 8 }, 8);
  await t.rejects(h.operations.reload('admin'), {
    code: 'invalid_config',
    message:
      /versions\.v2\.upstream\.maxConnections: must be ≥ limits\.maxSocketsPerWorker \(1024\).*the running limit/s,
  });
  t.equal(h.applied(), 0, 'nothing applied');
});
