import t from 'tap';
import { parseAdminAddress, resolveAdminUrl } from '../../../scripts/cli/admin-address.js';

// Issue 12 part 6: `--admin` without a scheme, and where the CLI looks when
// nothing names the admin API.

t.test('admin addresses: with or without a scheme, and garbage refused', async (t) => {
  const port9000 = (): number => 9000;
  const accepted: Array<[string, string]> = [
    ['http://127.0.0.1:9000', 'http://127.0.0.1:9000'],
    ['http://127.0.0.1:9000/', 'http://127.0.0.1:9000'],
    ['https://admin.example', 'https://admin.example'],
    ['HTTP://LOCALHOST:9100', 'http://localhost:9100'],
    ['http://localhost', 'http://localhost'], // a URL means its own default port (80)
    ['127.0.0.1:9000', 'http://127.0.0.1:9000'],
    [' 127.0.0.1:9001 ', 'http://127.0.0.1:9001'],
    ['localhost:9002', 'http://localhost:9002'],
    ['localhost', 'http://localhost:9000'], // no scheme, no port: the admin port
    ['gateway.internal', 'http://gateway.internal:9000'],
    [':9003', 'http://127.0.0.1:9003'],
    ['9004', 'http://127.0.0.1:9004'],
    ['[::1]:9005', 'http://[::1]:9005'],
    ['[::1]', 'http://[::1]:9000'],
    ['::1', 'http://[::1]:9000'],
  ];
  for (const [input, want] of accepted) t.equal(parseAdminAddress(input, '--admin', port9000), want, input);

  const refused: Array<[string, RegExp]> = [
    ['http//127.0.0.1:9000', /expected http:\/\/HOST:PORT, HOST:PORT, HOST, :PORT or PORT/],
    ['127.0.0.1:abc', /the port must be a number/],
    ['127.0.0.1:', /the port must be a number/],
    ['127.0.0.1:99999', /the port must be a number 1–65535/],
    [':0', /the port must be a number/],
    ['ftp://127.0.0.1:9000', /only http:\/\/ and https:\/\//],
    ['http://127.0.0.1:9000/admin', /drop the path/],
    ['http://127.0.0.1:9000/?x=1', /drop the path/],
    ['http://user:secret@127.0.0.1:9000', /set GRAYGATE_ADMIN_TOKEN/],
    ['http://', /expected/],
    ['two words', /expected/],
    ['127.0.0.1:9000/admin', /the port must be a number/],
    ['[::1:9000', /expected/],
  ];
  for (const [input, want] of refused) {
    let err: { exitCode?: number; message?: string } = {};
    try {
      parseAdminAddress(input, '--admin', port9000);
    } catch (e) {
      err = e as typeof err;
    }
    t.equal(err.exitCode, 64, `${input}: usage error`);
    t.match(err.message, want, input);
    t.ok(
      err.message?.startsWith('--admin: ') && err.message.endsWith(`, got ${JSON.stringify(input)}`),
      `${input}: names the flag and the value`,
    );
  }
});

t.test('resolution order: --admin, GRAYGATE_ADMIN_URL, GRAYGATE_ADMIN_PORT, 9000', async (t) => {
  const cases: Array<[string, string | undefined, Record<string, string>, string, string]> = [
    ['nothing set', undefined, {}, 'http://127.0.0.1:9000', 'default'],
    [
      'empty variables are unset',
      '',
      { GRAYGATE_ADMIN_URL: '', GRAYGATE_ADMIN_PORT: '' },
      'http://127.0.0.1:9000',
      'default',
    ],
    ['the port variable', undefined, { GRAYGATE_ADMIN_PORT: '9100' }, 'http://127.0.0.1:9100', 'GRAYGATE_ADMIN_PORT'],
    [
      'the URL variable wins over the port',
      undefined,
      { GRAYGATE_ADMIN_URL: '10.0.0.5:9200', GRAYGATE_ADMIN_PORT: '9100' },
      'http://10.0.0.5:9200',
      'GRAYGATE_ADMIN_URL',
    ],
    [
      'a host-only URL variable takes the port variable',
      undefined,
      { GRAYGATE_ADMIN_URL: 'localhost', GRAYGATE_ADMIN_PORT: '9100' },
      'http://localhost:9100',
      'GRAYGATE_ADMIN_URL',
    ],
    [
      '--admin wins over both',
      ':9300',
      { GRAYGATE_ADMIN_URL: 'http://10.0.0.5:9200', GRAYGATE_ADMIN_PORT: '9100' },
      'http://127.0.0.1:9300',
      '--admin',
    ],
    [
      'a variable behind --admin is not read',
      ':9300',
      { GRAYGATE_ADMIN_URL: 'garbage garbage', GRAYGATE_ADMIN_PORT: 'x' },
      'http://127.0.0.1:9300',
      '--admin',
    ],
  ];
  for (const [what, flag, env, url, source] of cases) t.same(resolveAdminUrl({ flag, env }), { url, source }, what);

  t.throws(() => resolveAdminUrl({ flag: undefined, env: { GRAYGATE_ADMIN_PORT: '99999' } }), {
    exitCode: 64,
    message: /^GRAYGATE_ADMIN_PORT: the port must be a number 1–65535, got "99999"$/,
  });
  t.throws(() => resolveAdminUrl({ flag: undefined, env: { GRAYGATE_ADMIN_URL: 'ftp://x' } }), {
    exitCode: 64,
    message: /^GRAYGATE_ADMIN_URL: only http/,
  });
  t.throws(
    () => resolveAdminUrl({ flag: 'localhost', env: { GRAYGATE_ADMIN_PORT: 'nine' } }),
    { exitCode: 64, message: /^GRAYGATE_ADMIN_PORT: / },
    'a host-only --admin reads the port variable',
  );
});
