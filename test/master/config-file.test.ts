import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configHash, loadConfig } from '../../master/config-file.js';
import { ROOT } from '../helpers/root.js';

// SPEC §13: graygate_config_info{hash} names the applied file by the first 12 hex of its sha256.

const SHIPPED = join(ROOT, 'config/graygate.json');

t.test('configHash is the first 12 hex digits of the text’s sha256', async (t) => {
  const cases: Array<[string, string]> = [
    ['', 'e3b0c44298fc'], // sha256 of nothing, the well-known vector
    ['abc', 'ba7816bf8f01'], // FIPS 180-2 test vector
    [
      '{"versions":{"v1":{"weight":1}}}\n',
      createHash('sha256').update('{"versions":{"v1":{"weight":1}}}\n').digest('hex').slice(0, 12),
    ],
    [
      'é',
      createHash('sha256')
        .update(Buffer.from([0xc3, 0xa9]))
        .digest('hex')
        .slice(0, 12),
    ], // hashed as UTF-8 bytes
  ];
  for (const [text, hash] of cases) t.equal(configHash(text), hash, JSON.stringify(text));
  t.not(configHash('{"a":1}'), configHash('{"a":1}\n'), 'bytes, not meaning: a trailing newline is a different file');
});

t.test('loadConfig returns the hash of the text it validated', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-config-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'graygate.json');
  const text = readFileSync(SHIPPED, 'utf8');
  writeFileSync(path, text);

  const plain = loadConfig(path, {});
  t.ok(plain.ok);
  if (plain.ok) t.equal(plain.hash, configHash(text));

  // Env overrides change the running config, not the identity of the file every pod shares.
  const overridden = loadConfig(path, { PORT: '8123', HOST: '127.0.0.1' });
  t.ok(overridden.ok);
  if (overridden.ok && plain.ok) {
    t.equal(overridden.value.listen.port, 8123);
    t.equal(overridden.hash, plain.hash);
  }

  writeFileSync(path, '{"versions":{"v1":{"weight":-1}}}');
  const invalid = loadConfig(path, {});
  t.same(
    invalid,
    { ok: false, problems: ['versions.v1.weight: must be ≥ 0'] },
    'an invalid file has problems and no hash',
  );
});

t.test(
  'an editor’s byte-order mark is not the JSON’s; LOG_LEVEL must be a level (a config error, exit 78)',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'graygate-config-file-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'graygate.json');
    writeFileSync(path, `\uFEFF${readFileSync(SHIPPED, 'utf8')}`);
    t.ok(loadConfig(path, {}).ok, 'saved with a BOM');
    t.ok(loadConfig(path, { LOG_LEVEL: 'debug' }).ok);
    t.ok(loadConfig(path, { LOG_LEVEL: '' }).ok, 'empty: the default');
    t.same(loadConfig(path, { LOG_LEVEL: 'verbose' }), {
      ok: false,
      problems: ['LOG_LEVEL: must be one of trace, debug, info, warn, error, fatal, silent, got "verbose"'],
    });
  },
);

t.test('loadConfig refuses a file over 16 MiB unread, and what is not a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-config-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'graygate.json');
  writeFileSync(path, Buffer.alloc(16 * 1024 * 1024 + 1, 0x20));
  t.same(loadConfig(path, {}), {
    ok: false,
    problems: [`${path}: cannot read: 16777217 bytes, over the 16 MiB a config file may hold`],
  });
  t.same(loadConfig(dir, {}), { ok: false, problems: [`${dir}: cannot read: not a regular file`] });
  t.same(loadConfig('/dev/zero', {}), { ok: false, problems: ['/dev/zero: cannot read: not a regular file'] });
});
