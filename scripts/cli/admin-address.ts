import { CliError, EXIT, type AdminUrlSource } from './admin-client.js';

// Where the CLI finds the admin API (SPEC §7; issue 12 part 6): `--admin`,
// else GRAYGATE_ADMIN_URL, else http://127.0.0.1 on GRAYGATE_ADMIN_PORT (the
// variable the master moves its admin port with), else port 9000. An empty
// variable counts as unset, as the master treats it. Only the source in use
// is read, so a stale variable behind `--admin` is no error.

/** The admin port when nothing names one (SPEC §6). */
const DEFAULT_ADMIN_PORT = 9000;
const DEFAULT_ADMIN_HOST = '127.0.0.1';

export interface AdminUrlInput {
  /** The `--admin` flag as typed, or undefined. */
  flag: string | undefined;
  /** GRAYGATE_ADMIN_URL and GRAYGATE_ADMIN_PORT are read from here. */
  env: Readonly<Record<string, string | undefined>>;
}

export interface ResolvedAdminUrl {
  /** `scheme://host[:port]`, no trailing slash. */
  url: string;
  /** Which setting gave it, named in the "unreachable" message. */
  source: AdminUrlSource;
}

/** Throws a usage CliError (64) naming the flag or variable when a used one is not an address. */
export function resolveAdminUrl(input: AdminUrlInput): ResolvedAdminUrl {
  const set = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const portEnv = set(input.env['GRAYGATE_ADMIN_PORT']);
  const port = (): number => (portEnv === undefined ? DEFAULT_ADMIN_PORT : parsePort(portEnv, 'GRAYGATE_ADMIN_PORT'));
  const flag = set(input.flag);
  if (flag !== undefined) return { url: parseAdminAddress(flag, '--admin', port), source: '--admin' };
  const fromEnv = set(input.env['GRAYGATE_ADMIN_URL']);
  if (fromEnv !== undefined)
    return { url: parseAdminAddress(fromEnv, 'GRAYGATE_ADMIN_URL', port), source: 'GRAYGATE_ADMIN_URL' };
  return {
    url: `http://${DEFAULT_ADMIN_HOST}:${port()}`,
    source: portEnv === undefined ? 'default' : 'GRAYGATE_ADMIN_PORT',
  };
}

function bad(name: string, value: string, why: string): never {
  throw new CliError(`${name}: ${why}, got ${JSON.stringify(value)}`, EXIT.usage);
}

/** `text` as a port; a problem quotes the whole `value` it came from. */
function parsePort(text: string, name: string, value: string = text): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) bad(name, value, 'the port must be a number 1–65535');
  return port;
}

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
// HOST[:PORT]: a name or IPv4 address, or an IPv6 address in brackets.
const HOST_PORT = /^(\[[0-9a-f:.]+\]|[^\s:/?#@[\]]+)(?::([^:]*))?$/i;
// A bare IPv6 address (`::1`): two or more colons and nothing else.
const BARE_IPV6 = /^[0-9a-f]*:[0-9a-f]*:[0-9a-f:.]*$/i;

/**
 * An admin address as a URL origin. Accepted: `http(s)://HOST[:PORT][/]`
 * (ports as URLs mean them, so `http://localhost` is port 80), and without a
 * scheme `HOST:PORT`, `HOST` (the admin port from `defaultPort`), `:PORT` and
 * `PORT` (on 127.0.0.1); all of those become http://. A path, query or
 * credentials are refused: every call goes to the root of the admin port and
 * the token travels in GRAYGATE_ADMIN_TOKEN.
 */
export function parseAdminAddress(value: string, name: string, defaultPort: () => number): string {
  const text = value.trim();
  const expected = 'expected http://HOST:PORT, HOST:PORT, HOST, :PORT or PORT';
  if (SCHEME.test(text)) {
    if (!URL.canParse(text)) bad(name, value, expected);
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      bad(name, value, 'only http:// and https:// are supported');
    if (url.username !== '' || url.password !== '')
      bad(name, value, 'credentials do not go in the URL; set GRAYGATE_ADMIN_TOKEN');
    if (url.pathname !== '/' || url.search !== '' || url.hash !== '')
      bad(name, value, 'the admin API is at the root of its port; drop the path');
    return url.origin;
  }
  const portOnly = /^:?(\d+)$/.exec(text);
  if (portOnly !== null) return `http://${DEFAULT_ADMIN_HOST}:${parsePort(portOnly[1]!, name, value)}`;
  if (BARE_IPV6.test(text)) return origin(`[${text}]`, defaultPort(), name, value);
  const m = HOST_PORT.exec(text);
  if (m === null) bad(name, value, expected);
  const port = m[2] === undefined ? defaultPort() : parsePort(m[2], name, value);
  return origin(m[1]!, port, name, value);
}

function origin(host: string, port: number, name: string, value: string): string {
  const text = `http://${host}:${port}`;
  if (!URL.canParse(text)) bad(name, value, 'not a host name or IP address');
  return new URL(text).origin;
}
