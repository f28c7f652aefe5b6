import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { idleTimeoutWarnings, validateConfig, workerIdleTimeoutMsFor } from '../../shared/config.js';
import { DEFAULTS, MAX_TIMER_MS } from '../../shared/defaults.js';
import { corsVerdict } from '../../master/cors.js';
import { ROOT } from '../helpers/root.js';

t.test('defaults fill a minimal config and the result is frozen', async (t) => {
  const r = validateConfig({ versions: { v1: { weight: 1 } } });
  if (!r.ok) throw new Error(r.problems.join('\n'));
  t.same(r.value.limits.maxQueuePerVersion, DEFAULTS.limits.maxQueuePerVersion);
  // A swap's drain is not the SIGTERM's: 10 min (upstream.timeouts.totalMs's default) against 30 s.
  t.same([r.value.limits.drainTimeoutMs, r.value.limits.shutdownTimeoutMs], [600_000, 30_000]);
  t.equal(r.value.versions.v1!.upstream.timeouts.firstByteMs, 120_000);
  t.equal(r.value.versions.v1!.entry, 'dist/worker/main.js');
  t.ok(Object.isFrozen(r.value.versions.v1!.upstream.timeouts), 'deep-frozen');
});

t.test('an IPv6 address to listen on may be written bracketed, as in a URL', async (t) => {
  // An addressing probe: `[::1]` passed the loopback check, then failed at start (ENOTFOUND) after the workers started.
  const r = validateConfig({ listen: { host: '[::1]' }, admin: { host: '[::1]' }, versions: { v1: { weight: 1 } } });
  if (!r.ok) throw new Error(r.problems.join('\n'));
  t.same([r.value.listen.host, r.value.admin.host], ['::1', '::1']);
  const plain = validateConfig({ listen: { host: '::' }, versions: { v1: { weight: 1 } } });
  t.equal(plain.ok && plain.value.listen.host, '::');
});

t.test('every problem is reported with its path', async (t) => {
  const r = validateConfig({
    listen: { port: 70000 },
    routing: { unknownVersion: 'maybe', default: 'nope' },
    limits: { maxSockets: 3, queueTimeoutMs: -1 },
    versions: { v1: { weight: 1, instances: 0, upstream: { format: 'openai', url: 'not a url', apiKey: 'sk-x' } } },
  });
  t.equal(r.ok, false);
  if (r.ok) return;
  t.same(r.problems.sort(), [
    'limits.maxSockets: is not supported, use limits.maxSocketsPerWorker',
    'limits.queueTimeoutMs: must be ≥ 0',
    'listen.port: must be ≤ 65535',
    'routing.default: must name a configured version (v1)',
    'routing.unknownVersion: must be "reject" or "fallback"',
    'versions.v1.instances: must be ≥ 1',
    'versions.v1.upstream.apiKey: is not supported, keys never sit in the file: put the key in an env var and name it in apiKeyEnv',
    'versions.v1.upstream.url: must be a URL or "mock:"',
  ]);
});

t.test(
  'upstream.url: http(s) with nothing the worker would drop unseen (a query, a fragment, credentials)',
  async (t) => {
    const problemOf = (url: string): string[] => {
      const r = validateConfig({ versions: { v1: { weight: 1, upstream: { format: 'openai', url } } } });
      return r.ok ? [] : r.problems;
    };
    for (const url of [
      'mock:',
      'http://127.0.0.1:8080/v1',
      'https://name.openai.azure.com/openai/v1/',
      'http://[::1]:11434',
    ])
      t.same(problemOf(url), [], url);
    t.match(problemOf('https://name.openai.azure.com/openai/deployments/gpt4o?api-version=2024-06-01'), [
      /^versions\.v1\.upstream\.url: must have no query or fragment: .*openai\/v1\)$/,
    ]);
    t.match(problemOf('https://api.example.com/v1#x'), [/no query or fragment/]);
    t.match(problemOf('https://api.example.com/v1?'), [/no query or fragment/], 'an empty query too');
    t.match(problemOf('https://user:sk-secret@api.example.com/v1'), [/no credentials: .*apiKeyEnv$/]);
    t.match(problemOf('ftp://files.example.com'), [/must be an http: or https: URL/]);
  },
);

t.test('the shipped config/graygate.json is valid', async (t) => {
  const r = validateConfig(JSON.parse(readFileSync(join(ROOT, 'config/graygate.json'), 'utf8')));
  t.ok(r.ok, r.ok ? 'valid' : r.problems.join('\n'));
});

t.test(
  'upstream.maxConnections below maxSocketsPerWorker is refused: no queue inside the worker (issue 10)',
  async (t) => {
    const upstream = (maxConnections: number): Record<string, unknown> => ({
      format: 'openai',
      url: 'http://127.0.0.1:1',
      maxConnections,
    });
    const r = validateConfig({
      limits: { maxSocketsPerWorker: 500 },
      versions: { v1: { weight: 1, upstream: upstream(499) }, v2: { weight: 0, upstream: upstream(500) } },
    });
    t.equal(r.ok, false);
    if (!r.ok) {
      t.equal(r.problems.length, 1);
      t.match(r.problems[0], /^versions\.v1\.upstream\.maxConnections: must be ≥ limits\.maxSocketsPerWorker \(500\)/);
    }
    const byDefault = validateConfig({
      versions: { v1: { weight: 1, upstream: upstream(DEFAULTS.limits.maxSocketsPerWorker - 1) } },
    });
    t.equal(byDefault.ok, false, 'against the default maxSocketsPerWorker too');
    const absent = validateConfig({
      versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'http://127.0.0.1:1' } } },
    });
    t.ok(
      absent.ok && absent.value.versions.v1!.upstream.maxConnections === undefined,
      'absent: the worker sizes its pool from maxSocketsPerWorker',
    );
  },
);

t.test('a weight is bounded, in the file as in PUT /admin/weights', async (t) => {
  const r = validateConfig({ versions: { v1: { weight: 1e308 }, v2: { weight: 1_000_000 } } });
  t.equal(r.ok, false);
  if (r.ok) return;
  t.same(r.problems, ['versions.v1.weight: must be ≤ 1000000']);
});

t.test('a timeout longer than a Node timer can wait is refused, not taken as 1 ms', async (t) => {
  const r = validateConfig({
    versions: { v1: { weight: 1 } },
    limits: { sendTimeoutMs: 2 ** 31, queueTimeoutMs: 2 ** 31 - 1, drainTimeoutMs: 2 ** 31 },
  });
  t.equal(r.ok, false);
  if (r.ok) return;
  t.same(r.problems, [
    'limits.drainTimeoutMs: must be ≤ 2147483647 (about 24.8 days)',
    'limits.sendTimeoutMs: must be ≤ 2147483647 (about 24.8 days)',
  ]);
});

t.test('a "__proto__" key is refused wherever it is, not skipped', async (t) => {
  // zod skips it without a word: a version of that name was dropped, a weight for it a silent no-op (a helper's
  // repro). JSON.parse makes it an own key, as a config file or admin body has it.
  const problems = (json: string): string[] => {
    const r = validateConfig(JSON.parse(json));
    return r.ok ? [] : r.problems;
  };
  t.match(problems('{"versions":{"v1":{"weight":1},"__proto__":{"weight":5}}}'), [
    'versions.__proto__: "__proto__" is not allowed as a key',
  ]);
  t.match(problems('{"__proto__":{"x":1},"versions":{"v1":{"weight":1}}}'), [
    '__proto__: "__proto__" is not allowed as a key',
  ]);
  t.match(problems('{"versions":{"v1":{"weight":1,"env":{"__proto__":"x"}}}}'), [
    'versions.v1.env.__proto__: "__proto__" is not allowed as a key',
  ]);
  const deep = `{"versions":{"v1":{"weight":1}},"x":${'['.repeat(300)}${']'.repeat(300)}}`;
  // Named by its first keys: the whole path was 257 of them.
  t.same(problems(deep), ['x.0.0.0.…: nested deeper than 256 levels'], 'nesting too deep to look through is refused');
});

t.test("an extension's or app shell's origin can be listed; `*` allows every page, `Origin: null` too", async (t) => {
  const origins = [
    'chrome-extension://abcdefghijklmnopabcdefghijklmnop/',
    'moz-extension://1b2c3d',
    'capacitor://localhost',
  ];
  const r = validateConfig({ versions: { v1: { weight: 1 } }, cors: { origins } });
  if (!r.ok) throw new Error(r.problems.join('\n'));
  const cors = r.value.cors;
  t.same(cors.origins, [
    'chrome-extension://abcdefghijklmnopabcdefghijklmnop',
    'moz-extension://1b2c3d',
    'capacitor://localhost',
  ]);
  t.equal(corsVerdict('chrome-extension://abcdefghijklmnopabcdefghijklmnop', cors), 'allowed');
  t.equal(corsVerdict('capacitor://localhost', cors), 'allowed');
  t.equal(corsVerdict('chrome-extension://bbcdefghijklmnopabcdefghijklmnop', cors), 'forbidden');
  t.equal(corsVerdict('null', cors), 'forbidden', 'a list never allows a page with no origin');
  t.equal(corsVerdict('null', { origins: '*' }), 'allowed', 'a file: page or sandboxed frame, under "*"');
});

t.test('cors.origins are kept as a browser sends Origin, and matched exactly', async (t) => {
  const origins = [
    'https://app.example.com/',
    'https://App.Example.com:443',
    'http://bücher.example:8080',
    'http://a.test',
  ];
  const r = validateConfig({ versions: { v1: { weight: 1 } }, cors: { origins } });
  if (!r.ok) throw new Error(r.problems.join('\n'));
  const cors = r.value.cors;
  t.same(cors.origins, [
    'https://app.example.com',
    'https://app.example.com',
    'http://xn--bcher-kva.example:8080',
    'http://a.test',
  ]);
  t.equal(corsVerdict('https://app.example.com', cors), 'allowed', 'written with a trailing slash');
  t.equal(corsVerdict('http://xn--bcher-kva.example:8080', cors), 'allowed');
  t.equal(corsVerdict('http://a.test/', cors), 'forbidden', 'no browser sends a slash');
  t.equal(corsVerdict('http://A.test', cors), 'forbidden');

  for (const origin of [
    'https://app.example.com/x',
    'https://app.example.com?',
    'https://u:p@app.example.com',
    'ftp://a',
    'wss://a',
    'file:///home/me/page.html',
    'data:text/html,x',
    'chrome-extension://abc/popup.html',
  ]) {
    const bad = validateConfig({ versions: { v1: { weight: 1 } }, cors: { origins: [origin] } });
    t.same(bad.ok ? [] : bad.problems, ['cors.origins.0: must be an origin such as https://app.example.com'], origin);
  }
});

t.test('a `*` in a listed origin is refused as a pattern, not kept as a host no browser sends', async (t) => {
  // A probe: `["https://*.example.com"]` was accepted and matched no page, so every call from them was a 403.
  for (const origin of ['*', 'https://*.example.com', 'http://localhost:*', 'https://%2A.example.com']) {
    const bad = validateConfig({ versions: { v1: { weight: 1 } }, cors: { origins: [origin] } });
    t.match(
      bad.ok ? [] : bad.problems,
      [/^cors\.origins\.0: must be an origin, not a pattern: .*"\*" \(not a list\)/],
      origin,
    );
  }
});

t.test("the master's idle timer derived from a ping interval stays within node's timer limit", async (t) => {
  t.equal(workerIdleTimeoutMsFor({ workerIdleTimeoutMs: undefined }, { pingIntervalMs: 15_000 }), 35_000);
  t.equal(workerIdleTimeoutMsFor({ workerIdleTimeoutMs: undefined }, { pingIntervalMs: 0 }), 0);
  t.equal(workerIdleTimeoutMsFor({ workerIdleTimeoutMs: undefined }, { pingIntervalMs: MAX_TIMER_MS }), MAX_TIMER_MS);
});

t.test('routing names are tokens, and no routing header is one every request carries alike', async (t) => {
  const of = (routing: Record<string, unknown>): string[] => {
    const r = validateConfig({ versions: { v1: { weight: 1 } }, routing });
    return r.ok ? [] : r.problems;
  };
  t.same(of({ header: 'X-Model-Version', stickyHeader: 'authorization', stickyCookie: 'gg_user' }), []);
  // A CR or LF in the cookie's name threw in the master's Set-Cookie and ended it (a probe); `;` made another cookie.
  t.same(of({ stickyCookie: 'uid\r\nX-Injected: 1' }), [
    "routing.stickyCookie: must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
  ]);
  t.same(of({ stickyCookie: 'a; Domain=evil.example; x' }).length, 1);
  t.same(of({ header: 'X Version' }), ['routing.header: must be a header name']);
  for (const header of ['host', 'Content-Type', 'cookie'])
    t.same(of({ header }), ['routing.header: must not be a header that frames or addresses the request'], header);
  t.same(of({ stickyHeader: 'host' }), [
    'routing.stickyHeader: must not be a header that frames or addresses the request',
  ]);
});

t.test("byte limits a string must hold are within node's longest string", async (t) => {
  const problems = (input: unknown): string[] => {
    const r = validateConfig(input);
    return r.ok ? [] : r.problems;
  };
  t.same(problems({ versions: { v1: { weight: 1 } }, limits: { maxBodyBytes: 0x1fffffe8 } }), []);
  t.same(problems({ versions: { v1: { weight: 1 } }, limits: { maxBodyBytes: 2 ** 31 } }), [
    'limits.maxBodyBytes: must be ≤ 536870888 (a body is parsed as one string)',
  ]);
  t.same(
    problems({
      versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'mock:', maxEventBytes: 2 ** 53 - 1 } } },
    }),
    ['versions.v1.upstream.maxEventBytes: must be ≤ 536870888 (an event is decoded as one string)'],
  );
  t.same(problems({ versions: { v1: { weight: 1 } }, limits: { maxHeaderBytes: 2 ** 53 - 1 } }), [
    'limits.maxHeaderBytes: must be ≤ 67108864',
  ]);
});

t.test('timers a worker must answer within have a floor a busy worker can meet', async (t) => {
  const problems = (limits: Record<string, unknown>): string[] => {
    const r = validateConfig({ versions: { v1: { weight: 1 } }, limits });
    return r.ok ? [] : r.problems;
  };
  t.same(problems({ workerHeadersTimeoutMs: 500, healthIntervalMs: 100 }), []);
  t.same(problems({ workerHeadersTimeoutMs: 50 }), ['limits.workerHeadersTimeoutMs: must be ≥ 500']);
  t.same(problems({ healthIntervalMs: 1 }), ['limits.healthIntervalMs: must be ≥ 100']);
});

t.test("a set workerIdleTimeoutMs not above a version's ping interval is warned of at start", async (t) => {
  const warnings = (workerIdleTimeoutMs: number | undefined, pingIntervalMs: number): string[] => {
    const r = validateConfig({
      versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'mock:', pingIntervalMs } } },
      limits: workerIdleTimeoutMs === undefined ? {} : { workerIdleTimeoutMs },
    });
    return r.ok ? idleTimeoutWarnings(r.value) : ['not valid'];
  };
  t.same(warnings(undefined, 15_000), [], 'derived from the pings: above them');
  t.same(warnings(20_000, 15_000), []);
  t.same(warnings(10_000, 0), [], 'pings off: nothing to cut them short of');
  t.same(warnings(3000, 15_000), [
    "limits.workerIdleTimeoutMs (3000 ms) is not above version v1's upstream.pingIntervalMs (15000 ms): its streams " +
      'that wait longer than that for a token are cut',
  ]);
});

t.test('an upstream event limit holds a whole event', async (t) => {
  const r = validateConfig({
    versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'mock:', maxEventBytes: 100 } } },
  });
  t.same(r.ok ? [] : r.problems, ['versions.v1.upstream.maxEventBytes: must be ≥ 1024']);
});

t.test('a worker budget for answers held whole holds one answer of 1 MiB at least', async (t) => {
  const r = validateConfig({ versions: { v1: { weight: 1 } }, limits: { maxBufferedAnswerBytes: 1_048_575 } });
  t.same(r.ok ? [] : r.problems, ['limits.maxBufferedAnswerBytes: must be ≥ 1048576 (1 MiB)']);
  const ok = validateConfig({ versions: { v1: { weight: 1 } }, limits: { maxBufferedAnswerBytes: 1_048_576 } });
  t.ok(ok.ok, 'at 1 MiB');
  const unset = validateConfig({ versions: { v1: { weight: 1 } } });
  t.equal(unset.ok && unset.value.limits.maxBufferedAnswerBytes, 256 * 1024 * 1024, 'default 256 MiB');
});

t.test('an upstream proxy is an http(s) origin without credentials, never in front of the mock', async (t) => {
  const problems = (upstream: Record<string, unknown>): string[] => {
    const r = validateConfig({ versions: { v1: { weight: 1, upstream: { format: 'openai', ...upstream } } } });
    return r.ok ? [] : r.problems;
  };
  const url = 'https://api.openai.com/v1';
  t.same(problems({ url, proxy: 'http://proxy.corp:3128', proxyAuthEnv: 'PROXY_AUTH' }), []);
  t.same(problems({ url, proxy: 'http://user:pw@proxy.corp:3128' }), [
    'versions.v1.upstream.proxy: must have no credentials: put user:password in an env var and name it in proxyAuthEnv',
  ]);
  t.same(problems({ url, proxy: 'socks5://proxy.corp:1080' }), [
    'versions.v1.upstream.proxy: must be an http: or https: URL of a proxy',
  ]);
  t.same(problems({ url, proxy: 'http://proxy.corp:3128/path' }), [
    'versions.v1.upstream.proxy: must be a proxy origin (scheme, host and port), with no path or query',
  ]);
  t.same(problems({ url: 'mock:', proxy: 'http://proxy.corp:3128' }), [
    'versions.v1.upstream.proxy: the mock upstream is in the worker: no proxy',
  ]);
  t.same(problems({ url, proxyAuthEnv: 'PROXY_AUTH' }), [
    'versions.v1.upstream.proxyAuthEnv: names the credentials of upstream.proxy',
  ]);
});

t.test('upstream.tls is for an https upstream, its certificate and key together', async (t) => {
  const problems = (upstream: Record<string, unknown>): string[] => {
    const r = validateConfig({ versions: { v1: { weight: 1, upstream: { format: 'openai', ...upstream } } } });
    return r.ok ? [] : r.problems;
  };
  const url = 'https://llm.corp/v1';
  t.same(problems({ url, tls: { caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' } }), []);
  t.same(problems({ url, tls: { certFile: 'c.pem' } }), ['versions.v1.upstream.tls: certFile and keyFile go together']);
  t.same(problems({ url: 'http://llm.corp/v1', tls: { caFile: 'ca.pem' } }), [
    'versions.v1.upstream.tls: only an https: upstream reads it',
  ]);
});

t.test('a target limit above the head limit is refused: its 414 could never come', async (t) => {
  const r = validateConfig({ versions: { v1: { weight: 1 } }, limits: { maxUrlBytes: 65_536 } });
  t.same(r.ok ? [] : r.problems, [
    'limits.maxUrlBytes: must be ≤ limits.maxHeaderBytes (the target is part of the head)',
  ]);
  t.ok(validateConfig({ versions: { v1: { weight: 1 } }, limits: { maxUrlBytes: 65_536, maxHeaderBytes: 65_536 } }).ok);
});

t.test('upstream.defaultMaxTokens: a positive integer, on an anthropic version only', async (t) => {
  const of = (format: string, defaultMaxTokens: unknown): string[] => {
    const r = validateConfig({ versions: { v1: { weight: 1, upstream: { format, url: 'mock:', defaultMaxTokens } } } });
    return r.ok ? [] : r.problems;
  };
  t.same(of('anthropic', 64_000), []);
  t.same(of('anthropic', 0), ['versions.v1.upstream.defaultMaxTokens: must be ≥ 1']);
  t.same(of('anthropic', 1.5), ['versions.v1.upstream.defaultMaxTokens: must be an integer']);
  t.same(of('anthropic', '8192'), ['versions.v1.upstream.defaultMaxTokens: must be a number']);
  t.same(of('anthropic', 2_000_000), ['versions.v1.upstream.defaultMaxTokens: must be ≤ 1000000']);
  for (const format of ['openai', 'ollama'])
    t.same(of(format, 8192), ['versions.v1.upstream.defaultMaxTokens: only an anthropic upstream reads it'], format);
});

t.test('upstream.strictTools is "refuse" or "unchecked"', async (t) => {
  const of = (strictTools: unknown): string[] => {
    const r = validateConfig({
      versions: { v1: { weight: 1, upstream: { format: 'ollama', url: 'mock:', strictTools } } },
    });
    return r.ok ? [] : r.problems;
  };
  t.same(of('unchecked'), []);
  t.same(of('refuse'), []);
  t.same(of(true), ['versions.v1.upstream.strictTools: must be "refuse" or "unchecked"']);
  const openai = validateConfig({
    versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'mock:', strictTools: 'unchecked' } } },
  });
  t.same(openai.ok ? [] : openai.problems, ['versions.v1.upstream.strictTools: only an ollama upstream reads it']);
});
