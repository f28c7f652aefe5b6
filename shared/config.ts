import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { DEFAULTS, MAX_TIMER_MS, VERSION_NAME } from './defaults.js';

// SPEC §2. One schema validates the config file, reloads and admin bodies
// (STYLE §25): every problem is reported as `path: message`, unknown keys are
// rejected, and the result is deep-frozen.

const ms = z
  .number({ error: 'must be a number of milliseconds' })
  .int('must be an integer')
  .min(0, 'must be ≥ 0')
  .max(MAX_TIMER_MS, `must be ≤ ${MAX_TIMER_MS} (about 24.8 days)`);
const positiveInt = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be ≥ 1');
/** A timeout or interval that must be set (≥ 1 ms). */
const positiveMs = positiveInt.max(MAX_TIMER_MS, `must be ≤ ${MAX_TIMER_MS} (about 24.8 days)`);
const port = z
  .number({ error: 'must be a port number' })
  .int('must be an integer')
  .min(0, 'must be ≥ 0')
  .max(65535, 'must be ≤ 65535');

/**
 * A routing weight (SPEC §2, §6): the file and PUT /admin/weights share it. Bounded so that a
 * pair's sum and its canary steps stay finite numbers (1e308 + 1e308 is Infinity, and a canary
 * step then routes NaN); a million leaves room for any ratio an operator writes.
 */
const MAX_WEIGHT = 1_000_000;
export const weightSchema = z
  .number({ error: 'must be a number' })
  .min(0, 'must be ≥ 0')
  .max(MAX_WEIGHT, `must be ≤ ${MAX_WEIGHT}`);

/** Far above any model's output limit (Claude's largest is 128k); a guard against a typo, not a model table. */
const MAX_DEFAULT_MAX_TOKENS = 1_000_000;

const MIN_WORKER_HEADERS_TIMEOUT_MS = 500;
const MIN_EVENT_BYTES = 1024;
const MIN_HEALTH_INTERVAL_MS = 100;
const MIN_BUFFERED_ANSWER_BYTES = 1024 * 1024;
/** node's longest string (0x1fffffe8 characters): a body or an event past it could never be decoded. */
const MAX_STRING_BYTES = 0x1fffffe8;
/** A head of 64 MiB is far past any client's; past ~2^31 node refuses the worker's maxHeaderSize at start. */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;
/** An HTTP token (RFC 9110 §5.6.2): a header name, and a cookie name (RFC 6265). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * Headers a routing header must not be: framing and the host, the same for every request of a client or of all
 * (`header: "host"` answered every request 400 "invalid version name"; a sticky `content-type` put every client on
 * one key, so the weights did nothing).
 */
const FRAMING_HEADERS = [
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'te',
  'upgrade',
  'expect',
];
const PIN_HEADERS_REFUSED = new Set([...FRAMING_HEADERS, 'cookie']);
const STICKY_HEADERS_REFUSED = new Set(FRAMING_HEADERS);

/** routing.header and routing.stickyHeader: a header name, lower-cased, not one every request carries alike. */
function routingHeader(refused: ReadonlySet<string>) {
  return z
    .string()
    .regex(TOKEN, 'must be a header name')
    .toLowerCase()
    .refine((name) => !refused.has(name), { message: 'must not be a header that frames or addresses the request' });
}

export const upstreamSchema = z
  .strictObject({
    format: z.enum(['openai', 'ollama', 'anthropic'], { error: 'must be one of openai, ollama, anthropic' }),
    url: z.string().superRefine((s, ctx) => {
      const problem = upstreamUrlProblem(s);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    }),
    model: z.string().min(1).optional(),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional(),
    http2: z.boolean().optional(),
    // SPEC §12: a tool's `strict: true` that an ollama upstream cannot guarantee is a 400; "unchecked" sends the tool
    // without the guarantee, as Ollama's own OpenAI-compatible endpoint does (the OpenAI Agents SDK sets strict on
    // every tool by default).
    strictTools: z.enum(['refuse', 'unchecked'], { error: 'must be "refuse" or "unchecked"' }).optional(),
    // Anthropic requires max_tokens and OpenAI clients mostly send none: the model's own output limit is what they
    // expect, and a fixed 4096 cut long answers (an agent's file write) at finish_reason "length". Per version, as the
    // limit is the model's; tokens, 1 to MAX_DEFAULT_MAX_TOKENS; absent, 4096 (DEFAULT_ANTHROPIC_MAX_TOKENS).
    defaultMaxTokens: positiveInt.max(MAX_DEFAULT_MAX_TOKENS, `must be ≤ ${MAX_DEFAULT_MAX_TOKENS}`).optional(),
    timeouts: z
      .strictObject({
        connectMs: ms.default(DEFAULTS.upstreamTimeouts.connectMs),
        firstByteMs: ms.default(DEFAULTS.upstreamTimeouts.firstByteMs),
        idleMs: ms.default(DEFAULTS.upstreamTimeouts.idleMs),
        totalMs: ms.default(DEFAULTS.upstreamTimeouts.totalMs),
        /** Default by the url's scheme (UpstreamClient): DEFAULTS.upstreamTimeouts.keepAliveMs, keepAliveHttpsMs. */
        keepAliveMs: positiveMs.optional(),
      })
      .prefault({}),
    // A whole event must fit: an OpenAI chunk is ~200 bytes (100 failed every stream, a probe), a tool call's more.
    maxEventBytes: positiveInt
      .min(MIN_EVENT_BYTES, `must be ≥ ${MIN_EVENT_BYTES}`)
      .max(MAX_STRING_BYTES, `must be ≤ ${MAX_STRING_BYTES} (an event is decoded as one string)`)
      .default(DEFAULTS.maxEventBytes),
    pingIntervalMs: ms.default(DEFAULTS.pingIntervalMs),
    // Issue 10, no hidden queue: absent, a worker's upstream pool gets limits.maxSocketsPerWorker
    // connections, one per request it can admit; set, it must be at least that (crossFieldProblems),
    // else requests beyond the pool would wait inside undici, unseen by admission and metrics.
    maxConnections: positiveInt.optional(),
    // A company's egress proxy (CONNECT): undici, unlike the OpenAI SDKs, reads no HTTPS_PROXY (a TLS probe).
    proxy: z
      .string()
      .superRefine((s, ctx) => {
        const problem = proxyUrlProblem(s);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    proxyAuthEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional(),
    // An https upstream that asks for a client certificate (mTLS), or whose certificate a private CA signed: PEM
    // files the worker reads at start (a TLS probe: none could be configured, and the refusal read as a reset).
    tls: z
      .strictObject({
        caFile: z.string().min(1, 'must not be empty').optional(),
        certFile: z.string().min(1, 'must not be empty').optional(),
        keyFile: z.string().min(1, 'must not be empty').optional(),
      })
      .optional(),
  })
  .superRefine((upstream, ctx) => {
    if (upstream.proxy !== undefined && upstream.url === 'mock:')
      ctx.addIssue({ code: 'custom', path: ['proxy'], message: 'the mock upstream is in the worker: no proxy' });
    if (upstream.tls !== undefined && !upstream.url.startsWith('https:'))
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'only an https: upstream reads it' });
    if ((upstream.tls?.certFile === undefined) !== (upstream.tls?.keyFile === undefined))
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'certFile and keyFile go together' });
    if (upstream.proxyAuthEnv !== undefined && upstream.proxy === undefined)
      ctx.addIssue({ code: 'custom', path: ['proxyAuthEnv'], message: 'names the credentials of upstream.proxy' });
    // Read by an ollama version only: on another it would be a switch that does nothing, silently.
    if (upstream.strictTools !== undefined && upstream.format !== 'ollama')
      ctx.addIssue({ code: 'custom', path: ['strictTools'], message: 'only an ollama upstream reads it' });
    if (upstream.defaultMaxTokens !== undefined && upstream.format !== 'anthropic')
      ctx.addIssue({ code: 'custom', path: ['defaultMaxTokens'], message: 'only an anthropic upstream reads it' });
  });

/** No NUL: node refuses it when it forks, which made a bad value a 500 deploy_failed instead of a 400 (a probe). */
const NO_NUL = /^[^\0]*$/;
/** A worker's extra environment: names without `=` (the name's end) or NUL, values without NUL. */
export const envSchema = z.record(
  z.string().regex(/^[^=\0]+$/, 'must be an environment variable name (no "=", no NUL)'),
  z.string({ error: 'must be a string' }).regex(NO_NUL, 'must not hold a NUL character'),
);
/** A worker build's entry file (the file, add and deploy share it). */
export const entrySchema = z.string().min(1, 'must not be empty').regex(NO_NUL, 'must not hold a NUL character');
/** How many processes a version runs (the file, add and deploy share it). */
export const instancesSchema = positiveInt.max(64, 'must be ≤ 64');

export const versionSchema = z.strictObject({
  entry: entrySchema.default('dist/worker/main.js'),
  instances: instancesSchema.default(1),
  weight: weightSchema.default(0),
  env: envSchema.default({}),
  upstream: upstreamSchema.prefault({ format: 'openai', url: 'mock:' }),
});

const versionNameKey = z.string().regex(VERSION_NAME, 'version names must match ^[a-z0-9][a-z0-9._-]{0,31}$');

/**
 * An address to listen on as node takes it: an IPv6 literal written as in a URL (`[::1]`, which the loopback check
 * took) is unbracketed; listened on as written, it failed at start (ENOTFOUND), after the workers had started.
 */
const unbracketed = (host: string): string => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);

export const configSchema = z.strictObject({
  listen: z
    .strictObject({
      host: z.string().default(DEFAULTS.listen.host).transform(unbracketed),
      port: port.default(DEFAULTS.listen.port),
    })
    .prefault({}),
  admin: z
    .strictObject({
      host: z.string().default(DEFAULTS.admin.host).transform(unbracketed),
      port: port.default(DEFAULTS.admin.port),
      /** Env vars never passed to workers, besides GRAYGATE_ADMIN_TOKEN (SPEC §6). */
      redactEnv: z
        .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'))
        .default([]),
      /** Directories an `entry` given to add/deploy must live in; empty: the working directory (SPEC §6). */
      entryRoots: z.array(z.string().min(1, 'must not be empty')).default([]),
    })
    .prefault({}),
  cors: z
    .strictObject({
      /** Origins allowed to call the main port from a browser (SPEC §12): a list, or "*"; default none. */
      origins: z
        .union(
          [
            z.literal('*'),
            z.array(
              z
                .string()
                .superRefine((value, ctx) => {
                  const problem = listedOriginProblem(value);
                  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
                })
                .transform((value) => originOf(value)!),
            ),
          ],
          {
            error: 'must be "*" or a list of origins',
          },
        )
        .default([]),
    })
    .prefault({}),
  config: z
    .strictObject({
      /** Watch the config file's directory and apply changes as a reload (SPEC §13). */
      watch: z.boolean({ error: 'must be a boolean' }).default(false),
    })
    .prefault({}),
  routing: z
    .strictObject({
      query: z.string().min(1).default(DEFAULTS.routing.query),
      header: routingHeader(PIN_HEADERS_REFUSED).default(DEFAULTS.routing.header),
      stickyHeader: routingHeader(STICKY_HEADERS_REFUSED).default(DEFAULTS.routing.stickyHeader),
      // Written into every new client's Set-Cookie: a CR or LF in it threw there and ended the master (a probe), and
      // `a; Domain=…` made a cookie that was never read back. A cookie-name (RFC 6265 §4.1.1, a token).
      stickyCookie: z
        .string()
        .regex(TOKEN, "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
        .default(DEFAULTS.routing.stickyCookie),
      default: z.string().default(DEFAULTS.routing.default),
      unknownVersion: z.enum(['reject', 'fallback'], { error: 'must be "reject" or "fallback"' }).default('reject'),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxSocketsPerWorker: positiveInt.default(DEFAULTS.limits.maxSocketsPerWorker),
      maxIdleSocketsPerWorker: z.number().int().min(0, 'must be ≥ 0').default(DEFAULTS.limits.maxIdleSocketsPerWorker),
      maxQueuePerVersion: z.number().int().min(0, 'must be ≥ 0').default(DEFAULTS.limits.maxQueuePerVersion),
      queueTimeoutMs: ms.default(DEFAULTS.limits.queueTimeoutMs),
      maxBodyBytes: positiveInt
        .max(MAX_STRING_BYTES, `must be ≤ ${MAX_STRING_BYTES} (a body is parsed as one string)`)
        .default(DEFAULTS.limits.maxBodyBytes),
      shutdownTimeoutMs: ms.default(DEFAULTS.limits.shutdownTimeoutMs),
      drainTimeoutMs: ms.default(DEFAULTS.limits.drainTimeoutMs),
      readyTimeoutMs: positiveMs.default(DEFAULTS.limits.readyTimeoutMs),
      bodyTimeoutMs: positiveMs.default(DEFAULTS.limits.bodyTimeoutMs),
      headTimeoutMs: positiveMs.default(DEFAULTS.limits.headTimeoutMs),
      keepAliveTimeoutMs: positiveMs.default(DEFAULTS.limits.keepAliveTimeoutMs),
      maxBufferedBodyBytes: positiveInt.default(DEFAULTS.limits.maxBufferedBodyBytes),
      // Below 1 MiB every answer of some size would be refused for it, whatever else the worker holds.
      maxBufferedAnswerBytes: positiveInt
        .min(MIN_BUFFERED_ANSWER_BYTES, `must be ≥ ${MIN_BUFFERED_ANSWER_BYTES} (1 MiB)`)
        .default(DEFAULTS.limits.maxBufferedAnswerBytes),
      sendTimeoutMs: positiveMs.default(DEFAULTS.limits.sendTimeoutMs),
      // A worker shows life by 102s every third of it; under 500 ms a busy box's worker cannot (a probe: at 50 ms, 397
      // of 400 streams were 504s).
      workerHeadersTimeoutMs: positiveMs
        .min(MIN_WORKER_HEADERS_TIMEOUT_MS, `must be ≥ ${MIN_WORKER_HEADERS_TIMEOUT_MS}`)
        .default(DEFAULTS.limits.workerHeadersTimeoutMs),
      /** Default: 2 × the version's upstream.pingIntervalMs + 5000 (workerIdleTimeoutMsFor). */
      workerIdleTimeoutMs: positiveMs.optional(),
      // Probes missed in a row kill a worker; a worker busy for a few tens of ms missed probes 20 ms apart, and every
      // worker was killed in a loop (a probe).
      healthIntervalMs: positiveMs
        .min(MIN_HEALTH_INTERVAL_MS, `must be ≥ ${MIN_HEALTH_INTERVAL_MS}`)
        .default(DEFAULTS.limits.healthIntervalMs),
      healthMisses: positiveInt.default(DEFAULTS.limits.healthMisses),
      maxHeaderBytes: positiveInt
        .min(1024, 'must be ≥ 1024')
        .max(MAX_HEADER_BYTES, `must be ≤ ${MAX_HEADER_BYTES}`)
        .default(DEFAULTS.limits.maxHeaderBytes),
      maxUrlBytes: positiveInt.min(256, 'must be ≥ 256').default(DEFAULTS.limits.maxUrlBytes),
      maxPipelinedRequests: positiveInt.default(DEFAULTS.limits.maxPipelinedRequests),
      /**
       * Client connections the main port holds at once (nginx's worker_connections); past it a few are answered 503
       * too_many_connections, then new ones are closed as accepted (master/client-connections.ts). Default: what the
       * master's open-file limit leaves for the workers alive (master/file-limit.ts), none where there is no limit.
       */
      maxClientConnections: positiveInt.optional(),
      /**
       * Connections one client (an IPv4 address, an IPv6 /64) holds on the main port at once; past it its new ones
       * are closed as accepted (HAProxy's src_conn_cur; master/client-connections.ts). Default: no such bound (behind
       * a load balancer or a NAT, many clients have one address).
       */
      maxClientConnectionsPerAddress: positiveInt.optional(),
      /**
       * Issue 10, one hop: a worker writes a streamed answer straight to the client's connection, whose descriptor
       * the master hands it; the master keeps the request, its timers and its facts. Experimental, off by default.
       */
      directStreams: z.boolean({ error: 'must be true or false' }).default(false),
    })
    // The target is part of the head: one longer than maxHeaderBytes overflows the head first, a 431, and the 414
    // maxUrlBytes promises never comes (a probe).
    .refine((limits) => limits.maxUrlBytes <= limits.maxHeaderBytes, {
      path: ['maxUrlBytes'],
      message: 'must be ≤ limits.maxHeaderBytes (the target is part of the head)',
    })
    .prefault({}),
  versions: z.record(versionNameKey, versionSchema),
});

export type Config = z.output<typeof configSchema>;
export type VersionConfig = z.output<typeof versionSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type Limits = Config['limits'];
export type CorsConfig = Config['cors'];
export type RoutingConfig = Config['routing'];

// STYLE §26: a renamed or misplaced key gets a hint, not just "unknown key".
const RENAMED_KEYS: Record<string, string> = {
  timeoutMs: 'use timeouts.totalMs',
  timeout: 'use timeouts.totalMs',
  maxSockets: 'use limits.maxSocketsPerWorker',
  maxQueue: 'use limits.maxQueuePerVersion',
  apiKey: 'keys never sit in the file: put the key in an env var and name it in apiKeyEnv',
  workers: 'use instances',
  script: 'use entry',
};

export type Validation<T> = { ok: true; value: T } | { ok: false; problems: string[] };

/** Turns zod issues into `path: message` lines (SPEC §2). */
function formatProblems(error: z.ZodError): string[] {
  const problems: string[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const at = path === '' ? key : `${path}.${key}`;
        // Own keys only: `constructor` read Object's prototype ("is not supported, function Object() …").
        const hint = Object.hasOwn(RENAMED_KEYS, key) ? RENAMED_KEYS[key] : undefined;
        problems.push(`${at}: is not supported${hint === undefined ? ' (unknown key)' : `, ${hint}`}`);
      }
    } else if (issue.code === 'invalid_key') {
      problems.push(`${path}: ${issue.issues[0]?.message ?? issue.message}`);
    } else {
      problems.push(`${path === '' ? '(root)' : path}: ${issue.message}`);
    }
  }
  return problems;
}

export function parseWith<S extends z.ZodType>(schema: S, raw: unknown): Validation<z.output<S>> {
  // zod skips a `__proto__` key without a word (its records and objects guard against prototype pollution): a
  // weight for `__proto__` was a silent no-op, a version of that name silently dropped. JSON.parse makes it an own key.
  const proto = protoKeyProblem(raw, '', 0);
  if (proto !== undefined) return { ok: false, problems: [proto] };
  const result = schema.safeParse(raw);
  if (!result.success) return { ok: false, problems: formatProblems(result.error) };
  return { ok: true, value: deepFreeze(result.data) };
}

/** Deeper than any config or admin body has a reason to nest; the walk below stays far from the stack's limit. */
const MAX_NESTING = 256;

/** The first own `__proto__` key in a parsed JSON value, as a problem with its path; or nesting past MAX_NESTING. */
function protoKeyProblem(value: unknown, path: string, depth: number): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  // The path's first keys name where (it was 256 of them: a 400 of ~600 characters, a config error as long).
  if (depth > MAX_NESTING) return `${shortPath(path)}: nested deeper than ${MAX_NESTING} levels`;
  if (Object.prototype.hasOwnProperty.call(value, '__proto__'))
    return `${path === '' ? '' : `${path}.`}__proto__: "__proto__" is not allowed as a key`;
  for (const [key, child] of Object.entries(value)) {
    const found = protoKeyProblem(child, path === '' ? key : `${path}.${key}`, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A path's first four keys, `…` for the rest. */
function shortPath(path: string): string {
  const keys = path.split('.');
  return keys.length <= 4 ? path : `${keys.slice(0, 4).join('.')}.…`;
}

/**
 * An upstream's maxConnections below the worker's admitted requests (`path`: where it was given), or undefined. The
 * file checks it, and so do an add, a deploy and a reload against the running limits (a probe: they took 1).
 */
export function upstreamConnectionsProblem(
  path: string,
  maxConnections: number | undefined,
  maxSocketsPerWorker: number,
): string | undefined {
  if (maxConnections === undefined || maxConnections >= maxSocketsPerWorker) return undefined;
  return `${path}.maxConnections: must be ≥ limits.maxSocketsPerWorker (${maxSocketsPerWorker}): a worker admits that many requests, and those beyond its upstream connections would wait inside the worker, unseen by admission (leave it out to get one connection per admitted request)`;
}

// Cross-field rules run on the raw input as well, so a file with field errors
// still gets these reported (zod skips refinements once fields fail).
function crossFieldProblems(raw: unknown): string[] {
  if (typeof raw !== 'object' || raw === null) return [];
  const { versions, routing } = raw as { versions?: unknown; routing?: { default?: unknown } };
  if (typeof versions !== 'object' || versions === null || Array.isArray(versions)) return [];
  const entries = Object.entries(versions as Record<string, { weight?: unknown } | null>);
  const problems: string[] = [];
  if (entries.length === 0) return ['versions: must define at least one version'];
  const names = entries.map(([n]) => n);
  const defaultName = routing?.default ?? DEFAULTS.routing.default;
  if (typeof defaultName === 'string' && !names.includes(defaultName)) {
    problems.push(`routing.default: must name a configured version (${names.join(', ')})`);
  }
  const maxSockets =
    (raw as { limits?: { maxSocketsPerWorker?: unknown } }).limits?.maxSocketsPerWorker ??
    DEFAULTS.limits.maxSocketsPerWorker;
  for (const [name, v] of entries) {
    const maxConnections = (v as { upstream?: { maxConnections?: unknown } } | null)?.upstream?.maxConnections;
    if (typeof maxConnections !== 'number' || typeof maxSockets !== 'number') continue;
    const problem = upstreamConnectionsProblem(`versions.${name}.upstream`, maxConnections, maxSockets);
    if (problem !== undefined) problems.push(problem);
  }
  const weights = entries.map(([, v]) => (typeof v === 'object' && v !== null ? (v.weight ?? 0) : 0));
  if (weights.every((w) => w === 0)) problems.push('versions: at least one version needs a weight > 0');
  return problems;
}

export function validateConfig(raw: unknown): Validation<Config> {
  const cross = crossFieldProblems(raw);
  const result = parseWith(configSchema, raw);
  if (!result.ok) return { ok: false, problems: [...result.problems, ...cross] };
  if (cross.length > 0) return { ok: false, problems: cross };
  return result;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * A literal loopback address or `localhost` (SPEC §6, issue 9 part 4): `127.0.0.0/8` written as a
 * dotted quad, `::1`, `[::1]`. Anything else — `127.evil.example`, `localhost.example`, a name that
 * merely resolves to 127.0.0.1 — is not loopback.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '[::1]') return true;
  return isIPv4(h) && h.startsWith('127.');
}

/**
 * The versions whose quiet streams limits.workerIdleTimeoutMs, set, would cut: a stream's `: ping` every
 * pingIntervalMs is its sign of life, and a silence of the idle timeout ends it (`worker_timeout`). A warning, not a
 * refusal: a worker build of one's own may send no pings (the README asks for the idle timeout above every ping).
 */
export function idleTimeoutWarnings(config: {
  limits: Pick<Limits, 'workerIdleTimeoutMs'>;
  versions: Readonly<Record<string, { upstream: Pick<UpstreamConfig, 'pingIntervalMs'> }>>;
}): string[] {
  const idleMs = config.limits.workerIdleTimeoutMs;
  if (idleMs === undefined) return [];
  return Object.entries(config.versions)
    .filter(([, version]) => version.upstream.pingIntervalMs > 0 && idleMs <= version.upstream.pingIntervalMs)
    .map(
      ([name, version]) =>
        `limits.workerIdleTimeoutMs (${idleMs} ms) is not above version ${name}'s upstream.pingIntervalMs ` +
        `(${version.upstream.pingIntervalMs} ms): its streams that wait longer than that for a token are cut`,
    );
}

/** SPEC §4a: 2 × pingIntervalMs + 5000 ms unless limits.workerIdleTimeoutMs is set; 0 (off) when pings are off. */
export function workerIdleTimeoutMsFor(
  limits: Pick<Limits, 'workerIdleTimeoutMs'>,
  upstream: Pick<UpstreamConfig, 'pingIntervalMs'>,
): number {
  if (limits.workerIdleTimeoutMs !== undefined) return limits.workerIdleTimeoutMs;
  // Capped: past MAX_TIMER_MS node fires a timer at once, and every stream of a version with a ping interval of
  // ~12 days or more (a way to say "rarely") was cut as silent after its first event.
  return upstream.pingIntervalMs > 0 ? Math.min(2 * upstream.pingIntervalMs + 5000, MAX_TIMER_MS) : 0;
}

/**
 * What is wrong with an upstream.url, if anything. The worker appends each endpoint's path to the URL's own and sends
 * nothing else of it, so a query (Azure's `?api-version=`), a fragment or credentials would be dropped unseen: each is
 * refused, with what to do instead.
 */
function proxyUrlProblem(value: string): string | undefined {
  if (!URL.canParse(value)) return 'must be an http: or https: URL of a proxy';
  const url = new URL(value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http: or https: URL of a proxy';
  if (url.username !== '' || url.password !== '')
    return 'must have no credentials: put user:password in an env var and name it in proxyAuthEnv';
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || /[?#]/.test(value))
    return 'must be a proxy origin (scheme, host and port), with no path or query';
  return undefined;
}

function upstreamUrlProblem(value: string): string | undefined {
  if (value === 'mock:') return undefined;
  if (!URL.canParse(value)) return 'must be a URL or "mock:"';
  const url = new URL(value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http: or https: URL, or "mock:"';
  if (url.username !== '' || url.password !== '')
    return 'must have no credentials: put the key in an env var and name it in apiKeyEnv';
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(value))
    return (
      'must have no query or fragment: graygate appends the endpoint path (/chat/completions) and sends no query ' +
      '(Azure OpenAI: use its v1 API, https://NAME.openai.azure.com/openai/v1)'
    );
  return undefined;
}

/**
 * Why a listed origin is none. A `*` in it (`["*"]`, `https://*.example.com`) was taken as a literal host no browser
 * sends, so every call from the pages meant was a 403: no pattern is read, and the message says so.
 */
function listedOriginProblem(value: string): string | undefined {
  const origin = originOf(value);
  // As kept, too: `https://%2A.example.com` is `https://*.example.com` once its host is decoded.
  if (value.includes('*') || origin?.includes('*') === true)
    return 'must be an origin, not a pattern: list each origin, or set cors.origins to "*" (not a list) for all';
  return origin === undefined ? 'must be an origin such as https://app.example.com' : undefined;
}

/**
 * `scheme://host[:port]` with at most a `/` after it, as a browser serialises it in `Origin` (lower-case host,
 * punycode, no default port, no slash), so that the header is matched exactly; undefined if it is not an origin.
 * Besides http(s), an extension's or app shell's own scheme (`chrome-extension://ID`, `moz-extension://UUID`,
 * `capacitor://localhost`), which a browser sends as `scheme://host` unchanged; never `file:`, `data:` and the like
 * (their pages send `Origin: null`) nor the other special schemes (`ws:`, `ftp:`), which no page has as its origin.
 */
function originOf(value: string): string | undefined {
  if (!URL.canParse(value) || /[?#]/.test(value)) return undefined;
  const url = new URL(value);
  if (url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== '')) return undefined;
  if (url.protocol === 'http:' || url.protocol === 'https:') return url.origin;
  return NO_PAGE_ORIGIN.has(url.protocol) || url.host === '' ? undefined : `${url.protocol}//${url.host}`;
}

const NO_PAGE_ORIGIN: ReadonlySet<string> = new Set(['ws:', 'wss:', 'ftp:', 'file:']);
