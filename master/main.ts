import { once } from 'node:events';
import { tmpdir } from 'node:os';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../shared/log.js';
import { GraygateError, isGraygateError } from '../shared/errors.js';
import { LISTEN_BACKLOG } from '../shared/defaults.js';
import { idleTimeoutWarnings } from '../shared/config.js';
import { NO_VERSION } from '../shared/metric-names.js';
import { EXIT_CONFIG, EXIT_USAGE, argvProblem, configPath, loadConfig } from './config-file.js';
import { Supervisor } from './supervisor.js';
import { CUT_GRACE_MS } from './worker-handle.js';
import { openSocketDir } from './socket-dir.js';
import { fileLimitWarning, openFileLimit } from './file-limit.js';
import { ClientConnections } from './client-connections.js';
import { laxParserWarning } from './http-parser.js';
import { VersionRegistry } from './version-registry.js';
import { unsetSecretWarnings } from './version.js';
import { createGateway } from './gateway.js';
import { createMainServer } from './main-server.js';
import { ByteBudget } from '../shared/byte-budget.js';
import { watchConfigFile, type ConfigWatch } from './config-watch.js';
import { CanaryManager } from './canary/manager.js';
import { createMasterMetrics } from './metrics.js';
import { createAdminServer } from './admin/server.js';
import { Operations } from './admin/operations.js';
import { shutdown } from './shutdown.js';

// The master process (SPEC §1, §4, §10). Wiring only.

/** EX_UNAVAILABLE: a port the config names cannot be listened on. */
const EXIT_CANT_LISTEN = 69;
/** EX_CANTCREAT: no directory for the workers' sockets can be made. */
const EXIT_CANT_CREATE = 73;
/** How long a second signal waits for the killed workers to exit, ms. */
const KILL_WAIT_MS = 2000;

const usage = argvProblem(process.argv.slice(2));
if (usage !== undefined) {
  process.stderr.write(`graygate: ${usage}\n`);
  process.exit(EXIT_USAGE);
}
const path = configPath(process.argv.slice(2), process.env);
const loaded = loadConfig(path, process.env);
if (!loaded.ok) {
  process.stderr.write(`graygate: invalid config ${path}:\n${loaded.problems.map((p) => `  ${p}`).join('\n')}\n`);
  process.exit(EXIT_CONFIG);
}
const config = loaded.value;
const log = createLogger({ role: 'master' });
// A signal while the master starts (workers forking, ports not yet listened on): there is nothing to drain, so the
// workers started so far are killed and the master exits with the shell's code for the signal. Without a handler,
// SIGTERM and SIGINT killed the master outright (its workers orphaned until they saw the channel close), or, as PID 1
// in a container, were ignored: start-up went on and served. SIGHUP's default, an exit, would do the same; the file
// being read as the master starts, a SIGHUP then is a reload once it listens. The running handlers replace these.
let isReloadAsked = false;
// The parent's IPC channel closing (PM2, a test, a script gone) or PM2's 'shutdown' message stop it the same way:
// announcing `listening` on a closed channel was an uncaught ERR_IPC_CHANNEL_CLOSED.
const startSignals: Array<[NodeJS.Signals | 'disconnect' | 'message', (msg?: unknown) => void]> = [
  ['SIGTERM', () => stopStarting('SIGTERM', 143)],
  ['SIGINT', () => stopStarting('SIGINT', 130)],
  ['SIGHUP', () => void (isReloadAsked = true)],
  ['disconnect', () => stopStarting('disconnect', 0)],
  ['message', (msg) => msg === 'shutdown' && stopStarting('message', 0)],
];
/** Set by a signal during start-up: settles never, the process exits. Start-up waits on it where it stops. */
let startStopped: Promise<never> | undefined;
function stopStarting(signal: string, code: number): void {
  if (startStopped !== undefined) return;
  log.warn({ signal }, 'signal during start-up: stopping');
  startStopped = new Promise<never>(() => killAndExit(code));
}
/** Kills the workers, waits for their exits (at most KILL_WAIT_MS, so none is left for init to reap) and exits. */
function killAndExit(code: number): void {
  const exit = (): never => process.exit(code);
  setTimeout(exit, KILL_WAIT_MS);
  // Before the supervisor exists (the socket directory being made), there is no worker to kill.
  void (made.supervisor?.destroyAll() ?? Promise.resolve()).then(exit);
}
/** The supervisor, once made (a signal can come before). */
const made: { supervisor?: Supervisor } = {};
for (const [signal, handler] of startSignals) process.on(signal, handler);
// Workers listen on unix sockets in a directory only this user can enter (no other local process can reach a worker,
// which calls the upstream with the version's key); removed when the master exits (a killed master's by the next
// start: socket-dir.ts). TMPDIR too deep for a socket path, or unusable: /tmp; neither: the master does not start.
const socketDir = (await openSocketDir([tmpdir(), '/tmp'], log))?.path;
if (startStopped !== undefined) await startStopped;
if (socketDir === undefined) {
  process.stderr.write(
    `graygate: no directory for the workers' unix sockets in ${process.env['TMPDIR'] === undefined ? '' : `TMPDIR (${tmpdir()}) or `}/tmp: ` +
      'set TMPDIR to a directory this user can write (a tmpfs with a read-only root)\n',
  );
  process.exit(EXIT_CANT_CREATE);
}
const supervisor: Supervisor = new Supervisor({
  log,
  limits: () => registry.config.limits,
  redactEnv: () => registry.config.admin.redactEnv,
  keyEnvs: () => registry.keyEnvs(),
  socketDir,
  onWorkerExit: (handle) => metrics.retireWorker(handle.version, handle.lastMetrics, handle.lastCounters),
  onAliveChange: (alive) => clientConnections.setWorkers(alive),
});
made.supervisor = supervisor;
const fileLimit = openFileLimit();
const fileWarning = fileLimit === undefined ? undefined : fileLimitWarning(fileLimit, config);
if (fileWarning !== undefined) log.warn(fileWarning.fields, fileWarning.message);
// Limits take a restart (a reload reports them): the bound's settings are the start's; its workers are those alive.
const clientConnections = new ClientConnections({
  configured: config.limits.maxClientConnections,
  perAddress: config.limits.maxClientConnectionsPerAddress,
  fileLimit,
  maxIdleSocketsPerWorker: config.limits.maxIdleSocketsPerWorker,
  log,
});
const parserWarning = laxParserWarning(process.versions);
if (parserWarning !== undefined) log.warn({ node: process.version }, parserWarning);
for (const warning of [
  ...idleTimeoutWarnings(config),
  ...unsetSecretWarnings(config.versions, process.env, config.admin.redactEnv),
]) {
  log.warn(warning);
}
const registry: VersionRegistry = new VersionRegistry({
  config,
  supervisor,
  log,
  onRemoved: (name) => metrics.forgetVersion(name),
  onUnrouted: (name) => canaries.forget(name),
});
const budget = new ByteBudget(config.limits.maxBufferedBodyBytes);
const canaries = new CanaryManager({ versions: registry, log });
const operations: Operations = new Operations({
  registry,
  canaries,
  log,
  configPath: path,
  env: process.env,
  configHash: loaded.hash,
  onWatchChange: (isOn) => setWatch(isOn),
  clientConnections: () => clientConnections.status(),
});
const metrics = createMasterMetrics({
  versions: () => registry,
  bufferedBodyBytes: () => budget.heldBytes,
  configHash: () => operations.configHash,
  lastReload: () => operations.lastReload,
  canaries: () => canaries.list(),
  canaryEnds: () => canaries.endedTotals(),
  clientConnections: () => clientConnections.status(),
});
let isClosing = false;
/** The shutdown deadline passed: what is still in flight is the master's cut, not its client's leaving. */
let isCutting = false;

try {
  await registry.startAll();
} catch (err) {
  // The workers killed by a signal's stop: its exit follows.
  if (startStopped !== undefined) await startStopped;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`graygate: a worker did not start: ${message}\n`);
  log.fatal({ err }, 'workers did not start');
  void supervisor.destroyAll();
  process.exit(1);
}

if (startStopped !== undefined) await startStopped;

const gateway = createGateway({
  registry,
  log,
  metrics,
  budget,
  outcomes: canaries,
  isClosing: () => isClosing,
  isCutting: () => isCutting,
  isOverBound: (socket) => clientConnections.isOverBound(socket),
});
const main = createMainServer({
  gateway,
  limits: config.limits,
  log,
  onRefused: (status) => metrics.onRequestDone(NO_VERSION, status, undefined),
  connections: clientConnections,
});
const admin = createAdminServer({
  versions: registry,
  operations,
  metrics,
  log,
  token: process.env['GRAYGATE_ADMIN_TOKEN'],
  isClosing: () => isClosing,
});

// Issue 12 part 6: a busy port ends start-up with one line naming what moves it, and no worker left behind.
const listenOn = async (
  server: Server,
  port: number,
  host: string,
  movedBy: { port: string; host: string },
): Promise<void> => {
  server.listen({ port, host, backlog: LISTEN_BACKLOG });
  try {
    await once(server, 'listening');
  } catch (err) {
    // A signal came while listening: its exit (and code) first.
    if (startStopped !== undefined) await startStopped;
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'is in use'
        : code === 'EACCES'
          ? 'is not allowed for this user'
          : `cannot be listened on (${code ?? (err as Error).message})`;
    // A port in use or below 1024 is the port's fault; anything else (ENOTFOUND, EADDRNOTAVAIL) the host's.
    const fix = code === 'EADDRINUSE' || code === 'EACCES' ? movedBy.port : movedBy.host;
    process.stderr.write(`graygate: ${host}:${port} ${why}; choose another with ${fix}\n`);
    // The line above says it; the log gets the same, and the error's stack only when its cause is not one of those two.
    log.fatal({ port, host, code, ...(code === 'EADDRINUSE' || code === 'EACCES' ? {} : { err }) }, 'cannot listen');
    void supervisor.destroyAll();
    process.exit(EXIT_CANT_LISTEN);
  }
  // Listening, only an accept can fail (EMFILE past libuv's reserve descriptor): a connection lost, not the master.
  server.on('error', (err) => log.error({ err, port }, 'accepting a connection failed'));
};
await listenOn(main, config.listen.port, config.listen.host, {
  port: 'listen.port in the config or PORT',
  host: 'listen.host in the config or HOST',
});
await listenOn(admin, config.admin.port, config.admin.host, {
  port: 'admin.port in the config or GRAYGATE_ADMIN_PORT',
  host: 'admin.host in the config',
});
// A signal while the ports were being listened on: nothing is announced, its exit follows.
if (startStopped !== undefined) await startStopped;
const mainPort = (main.address() as AddressInfo).port;
const adminPort = (admin.address() as AddressInfo).port;
// An IPv6 literal in a URL is bracketed (http://[::1]:8080); any address is reached as localhost.
const urlHost = (host: string): string =>
  host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
const shownHost = urlHost(config.listen.host);
const url = `http://${shownHost}:${mainPort}`;
const adminUrl = `http://${urlHost(config.admin.host)}:${adminPort}`;
const curl =
  `curl -N ${url}/v1/chat/completions -H 'content-type: application/json' ` +
  `-d '{"model":"graygate-mock","stream":true,"messages":[{"role":"user","content":"Hello"}]}'`;
// SPEC §1: the URL and a ready-to-paste curl. On a terminal as plain lines; otherwise in the
// JSON log line, so a log pipeline never sees non-JSON output.
if (process.stdout.isTTY === true)
  process.stdout.write(`\ngraygate listening on ${url} (admin ${adminUrl})\n\n  ${curl}\n\n`);
log.info({ url, adminUrl, versions: [...registry.versions.keys()], curl }, 'graygate listening');
// PM2 `wait_ready` waits for the string 'ready'; tests and scripts read the addresses first: where a process on this
// machine reaches each server (a wildcard's loopback, else the address bound: `::1` was told as 127.0.0.1).
const reachable = (server: Server): string => {
  const { address, port } = server.address() as AddressInfo;
  return `http://${urlHost(address === '0.0.0.0' || address === '::' ? '127.0.0.1' : address)}:${port}`;
};
if (process.connected)
  process.send?.({
    type: 'listening',
    url: reachable(main),
    adminUrl: reachable(admin),
    pid: process.pid,
  });
if (process.connected) process.send?.('ready');

// SPEC §13: `config.watch` applies a changed file as a reload (kubelet's ConfigMap symlink swap
// included); an invalid file is refused and logged once, the running config stays. A reload that turns it on or off
// starts or stops it (operations.ts onWatchChange).
let watch: ConfigWatch | undefined;
function setWatch(isOn: boolean): void {
  if (!isOn || isClosing) {
    if (watch !== undefined) log.info('config watch off');
    watch?.close();
    watch = undefined;
    return;
  }
  if (watch !== undefined) return;
  try {
    watch = startWatch();
    log.info({ path }, 'config watch on');
  } catch (err) {
    // A reload that turned it on is applied all the same; the file is then applied by reloads only.
    log.error({ err: err instanceof Error ? err.message : err }, 'config watch could not start');
  }
}

function startWatch(): ConfigWatch {
  return watchConfigFile({
    path,
    initialHash: operations.configHash,
    // Content already applied another way (POST /admin/reload, SIGHUP) is not reloaded again: a reload
    // aborts running canaries (SPEC §11), and this one would change nothing else.
    onChange: (change) =>
      change.hash === operations.configHash
        ? undefined
        : operations.reload('watch').then(
            () => undefined, // the reload logs `config reloaded` itself: one line per reload, whatever started it
            (err: unknown) => {
              const message = err instanceof Error ? err.message : String(err);
              // An invalid file is refused for good (logged once); one that could not be applied (a
              // build that did not start, a deploy running) changed nothing and is tried again after a
              // backoff: the rejection tells the watch so, and onError logs it.
              if (isGraygateError(err) && err.code === 'invalid_config') {
                log.error({ err: message }, 'config file changed: refused, the running config stays');
                return;
              }
              throw new Error(`config file changed: not applied, nothing changed, tried again later: ${message}`, {
                cause: err,
              });
            },
          ),
    onError: (err) => log.error({ err: err.message }, 'config watch'),
    onRewatch: (dir) => log.warn({ dir }, 'config watch: the directory was replaced, watching the new one'),
  });
}
setWatch(config.config.watch);

const stop = (signal: string): void => {
  if (isClosing) {
    if (signal === 'SIGINT' || signal === 'SIGTERM') stopNow(signal);
    return;
  }
  isClosing = true;
  registry.stopRestarts();
  setWatch(false);
  // Running canaries stop where they are; a restarted master starts from the file's weights (SPEC §11).
  canaries.close();
  log.info({ signal }, 'shutting down');
  shutdown({
    main,
    admin,
    inflight: gateway,
    refuseQueued: () => registry.refuseQueued(new GraygateError('shutting_down')),
    supervisor,
    log,
    deadlineMs: config.limits.shutdownTimeoutMs,
    onDeadline: () => {
      isCutting = true;
      // Answered as a failure is rather than reset with their connections: a 503 before the status, a stream's final
      // error event (a client's SDK reads a cut answer, not an ended one), logged and counted as the shutdown's.
      // A worker that writes its answers to clients (limits.directStreams) ends those, within a second.
      return gateway.cutAll(new GraygateError('shutting_down'), CUT_GRACE_MS);
    },
  }).then(
    () => process.exit(0),
    (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
};
// A second SIGINT or SIGTERM during the drain (Ctrl-C twice, an operator who will not wait): the workers are
// killed and the master exits at once, with a shell's code for that signal, as the load-test scripts do.
let isStoppingNow = false;
const stopNow = (signal: 'SIGINT' | 'SIGTERM'): void => {
  if (isStoppingNow) return;
  isStoppingNow = true;
  log.warn(
    { signal, inflight: gateway.inflight },
    'second signal during shutdown: stopping now, requests in flight cut',
  );
  killAndExit(signal === 'SIGINT' ? 130 : 143);
};
// The running handlers are added before the start's are removed: a signal's last listener removed closes node's
// watch on it, and a signal already received and not yet dispatched was lost with it (a SIGTERM sent as `listening`
// arrived was never heard: the master served on until SIGKILLed), or, between the two, killed the master outright.
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
const onSighup = (): void => {
  // A reload during the drain would start builds only to stop them.
  if (isClosing) return log.info('SIGHUP during shutdown: no reload');
  operations.reload('SIGHUP').then(
    () => undefined, // logged by the reload itself (`config reloaded`)
    (err: unknown) =>
      // One queued behind a running reload may start after SIGTERM: refused then, as the signal itself would be.
      isClosing
        ? log.info('SIGHUP during shutdown: no reload')
        : log.error({ err: err instanceof Error ? err.message : err }, 'SIGHUP reload refused'),
  );
};
process.on('SIGHUP', onSighup);
for (const [signal, handler] of startSignals) process.off(signal, handler);
// One asked for while the master started (the file may have changed since it was read).
if (isReloadAsked) onSighup();
// PM2 sends 'shutdown' over IPC on Windows and with shutdown_with_message.
process.on('message', (msg) => msg === 'shutdown' && stop('message'));
// Started with an IPC channel (PM2, a test, a load-test script), the master stops as on SIGTERM
// when that channel closes: its parent is gone, and nothing would stop or restart it — an orphan
// that keeps the ports would make the parent's next start fail. Workers do the same (worker-lifecycle).
process.on('disconnect', () => stop('disconnect'));
// The channel may have closed while the master was starting, before the listener existed.
if (process.send !== undefined && !process.connected) stop('disconnect');
