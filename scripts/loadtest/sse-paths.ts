import { basename, join, resolve } from 'node:path';
import type { Args, SsePathKey } from './args.js';
import { graygateLaunch } from './graygate-env.js';
import { startGateway, type RunningGateway } from './gateway.js';
import { pickListening, waitForMessage } from './ipc-wait.js';
import { workerAddress, type WorkerAddress } from './listen-port.js';
import { findNginx, startNginxIfAble } from './nginx.js';
import { MOCK_UPSTREAM_ENTRY, MUX_ENTRY, ONEHOP_ENTRY, ROOT, buildEntries } from './paths.js';
import { forkTracked, stopTracked } from './processes.js';
import type { Progress } from './progress.js';
import { processGroupMembers, type PidGroups } from './rss.js';
import { startNaiveProxy } from './standalone.js';

// The paths `compare --sse` drives (issue 10), all in front of ONE mock
// upstream process whose CPU is the yardstick: straight to it, nginx, a
// minimal node:http pipe proxy, graygate (master + 1 worker), and optionally
// a second graygate build. For GET /v1/models the proxies stand in front of
// each graygate build's own worker instead, beside that graygate.

function pickPrototype(m: unknown): { url: string; pid: number; backPid: number } | undefined {
  if (typeof m !== 'object' || m === null) return undefined;
  const { type, url, pid, backPid } = m as Record<string, unknown>;
  if (type !== 'listening' || typeof url !== 'string' || typeof pid !== 'number' || typeof backPid !== 'number')
    return undefined;
  return { url, pid, backPid };
}

/**
 * A two-process prototype (scripts/loadtest/onehop-prototype.ts, mux-prototype.ts): front and back process. With
 * cpuProfDir, both run with --cpu-prof (the back inherits the front's node flags).
 */
async function startTwoProcessPrototype(
  env: Record<string, string>,
  signal: AbortSignal,
  entry: { name: string; path: string; cpuProfDir?: string | undefined } = {
    name: 'one-hop prototype',
    path: ONEHOP_ENTRY,
  },
): Promise<{ url: string; pid: number; backPid: number; stop: () => Promise<void> }> {
  const execArgv = entry.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${entry.cpuProfDir}`];
  const p = forkTracked(entry.name, entry.path, [], { cwd: ROOT, env: { ...process.env, ...env }, execArgv });
  // A profile is written on exit: time to write it.
  const stop = (): Promise<void> => stopTracked(p, { graceMs: entry.cpuProfDir === undefined ? 1000 : 15_000 });
  try {
    return { ...(await waitForMessage(p, { pick: pickPrototype, timeoutMs: 15_000, signal })), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface SsePath {
  key: SsePathKey;
  label: string;
  /** Origin + prefix: requests go to `${base}/chat/completions` (the mock's OpenAI base is /v1). */
  base: string;
  /** The proxy's processes by role, for CPU and RSS; empty for direct. */
  pids: PidGroups;
}

/** One graygate build with the helpers that front its worker, for the small-request workload. */
export interface GraygateBuild {
  key: 'graygate' | 'baseline' | 'direct-streams' | 'baseline-direct-streams';
  label: string;
  root: string;
  gateway: RunningGateway;
  masterPid: number;
  workerPid: number;
  /** Its worker's own address (TCP port or unix socket), found through /proc; undefined if neither. */
  worker: WorkerAddress | undefined;
}

export interface SseSetup {
  mockPid: number;
  /** The mock's OpenAI base URL (…/v1). */
  mockBase: string;
  paths: SsePath[];
  builds: GraygateBuild[];
  notes: string[];
  /** Stops everything, newest first. */
  stop: () => Promise<void>;
}

export async function startSsePaths(args: Args, progress: Progress, signal: AbortSignal): Promise<SseSetup> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    const notes: string[] = [];
    const wanted = new Set(args.paths);
    progress.phase('starting the mock upstream (its own process: the CPU yardstick)');
    const mockProcess = forkTracked('mock upstream', MOCK_UPSTREAM_ENTRY, [], { cwd: ROOT });
    stops.push(() => stopTracked(mockProcess, { graceMs: 2000 }));
    const mock = await waitForMessage(mockProcess, { pick: pickListening, timeoutMs: 15_000, signal });
    const mockOrigin = new URL(mock.url).origin;
    const paths: SsePath[] = [];
    if (wanted.has('direct')) paths.push({ key: 'direct', label: 'direct (client → mock)', base: mock.url, pids: {} });

    if (wanted.has('nginx')) progress.phase('starting nginx (1 worker), when installed, in front of the mock');
    // keepalive as large as the loaded workload's streams, so nginx reuses upstream connections too.
    const nginx = wanted.has('nginx')
      ? await startNginxIfAble({ upstream: new URL(mockOrigin).host, keepalive: 1024, signal })
      : undefined;
    if (nginx !== undefined && 'skipped' in nginx) notes.push(nginx.skipped);
    if (nginx !== undefined && !('skipped' in nginx)) {
      stops.push(nginx.stop);
      paths.push({
        key: 'nginx',
        label: 'nginx (1 worker)',
        base: `${nginx.url}/v1`,
        pids: { nginx: processGroupMembers(nginx.pid) },
      });
    }
    // The minimal node proxy, and the raw-body prototype (BENCHMARKS "A hop that relays the body as raw bytes") with
    // the upstream socket read through 'data' or through net's onread.
    const naive: Array<{
      key: 'node' | 'rawbody' | 'rawlean';
      mode: 'minimal' | 'rawbody';
      env?: Record<string, string>;
      label: string;
      what: string;
    }> = [
      { key: 'node', mode: 'minimal', label: 'node:http pipe proxy', what: 'the minimal node:http proxy' },
      {
        key: 'rawbody',
        mode: 'rawbody',
        label: 'raw-body prototype proxy',
        what: 'the raw-body prototype proxy (node:http in, raw chunked body out)',
      },
      {
        key: 'rawlean',
        mode: 'rawbody',
        env: { RAWBODY_ONREAD: '1' },
        label: 'raw-body prototype, onread',
        what: 'the raw-body prototype, upstream read with onread,',
      },
    ];
    for (const { key, mode, env, label, what } of naive) {
      if (!wanted.has(key)) continue;
      progress.phase(`starting ${what} in front of the mock`);
      const proxy = await startNaiveProxy({
        mode,
        targetUrl: mockOrigin,
        ...(env === undefined ? {} : { env }),
        cpuProfDir: args.cpuProfDir === undefined ? undefined : resolve(args.cpuProfDir, key),
        signal,
      });
      stops.push(proxy.stop);
      paths.push({ key, label, base: `${proxy.url}/v1`, pids: { proxy: [proxy.pid] } });
    }
    // The two-process prototypes: the one-hop design (ONE-HOP.md) and the multiplexed hop (BENCHMARKS, "A multiplexed
    // master↔worker hop"); front and back counted as master and worker.
    const prototypes: Array<{
      key: 'onehop' | 'mux';
      path: string;
      env: Record<string, string>;
      label: string;
      what: string;
    }> = [
      {
        key: 'onehop',
        path: ONEHOP_ENTRY,
        env: { ONEHOP_TARGET: mockOrigin },
        label: 'one-hop prototype (2 processes)',
        what: 'the one-hop prototype (front parses, back writes to the client)',
      },
      {
        key: 'mux',
        path: MUX_ENTRY,
        env: { MUX_TARGET: mockOrigin },
        label: 'mux prototype (two processes, one multiplexed socket)',
        what: 'the multiplexed-hop prototype (front, back, one unix socket between)',
      },
    ];
    for (const { key, path, env, label, what } of prototypes) {
      if (!wanted.has(key)) continue;
      progress.phase(`starting ${what} in front of the mock`);
      const up = await startTwoProcessPrototype(env, signal, {
        name: label,
        path,
        cpuProfDir: args.cpuProfDir === undefined ? undefined : resolve(args.cpuProfDir, key),
      });
      stops.push(up.stop);
      paths.push({ key, label, base: `${up.url}/v1`, pids: { master: [up.pid], worker: [up.backPid] } });
    }
    // The control of mux: two naive node hops, two processes (the back one in front of the mock).
    if (wanted.has('node2')) {
      progress.phase('starting two node:http pipe proxies, one in front of the other, in front of the mock');
      const prof = (role: string): string | undefined =>
        args.cpuProfDir === undefined ? undefined : resolve(args.cpuProfDir, `node2-${role}`);
      const backProxy = await startNaiveProxy({
        mode: 'minimal',
        targetUrl: mockOrigin,
        cpuProfDir: prof('back'),
        signal,
      });
      stops.push(backProxy.stop);
      const frontProxy = await startNaiveProxy({
        mode: 'minimal',
        targetUrl: backProxy.url,
        cpuProfDir: prof('front'),
        signal,
      });
      stops.push(frontProxy.stop);
      paths.push({
        key: 'node2',
        label: 'node:http pipe proxy × 2 (two processes, chained)',
        base: `${frontProxy.url}/v1`,
        pids: { master: [frontProxy.pid], worker: [backProxy.pid] },
      });
    }

    const builds: GraygateBuild[] = [];
    const roots: Array<{ key: GraygateBuild['key']; root: string | undefined; label: string }> = [];
    // "graygate" alone; "(current)" beside a baseline; "(<dir>)" when it runs another tree, e.g. "(before)".
    const label =
      args.graygateRoot !== undefined
        ? `graygate (${basename(args.graygateRoot)})`
        : args.baselineRoot === undefined
          ? 'graygate'
          : 'graygate (current)';
    const flagged = args.nodeFlags.length === 0 ? label : `${label} ${args.nodeFlags.join(' ')}`;
    if (wanted.has('graygate')) roots.push({ key: 'graygate', root: args.graygateRoot, label: flagged });
    if (wanted.has('baseline') && args.baselineRoot !== undefined)
      roots.push({
        key: 'baseline',
        root: args.baselineRoot,
        label: `graygate (before${flagNote(args.baselineNodeFlags)})`,
      });
    // The same build with limits.directStreams: workers write streamed answers to the client (docs/ONE-HOP.md).
    if (wanted.has('direct-streams'))
      roots.push({ key: 'direct-streams', root: args.graygateRoot, label: 'graygate, directStreams' });
    if (wanted.has('baseline-direct-streams') && args.baselineRoot !== undefined)
      roots.push({
        key: 'baseline-direct-streams',
        root: args.baselineRoot,
        label: `graygate (before${flagNote(args.baselineNodeFlags)}), directStreams`,
      });
    for (const r of roots) {
      const entries = buildEntries(r.root);
      progress.phase(
        `starting ${r.label} from ${entries.root} (master + ${args.instances} worker${args.instances === 1 ? '' : 's'} → the mock)`,
      );
      const isBaseline = r.key === 'baseline' || r.key === 'baseline-direct-streams';
      const launch = graygateLaunch({
        nodeFlags: isBaseline ? args.baselineNodeFlags : args.nodeFlags,
        cpuProfDir: args.cpuProfDir === undefined ? undefined : join(args.cpuProfDir, r.key),
      });
      const gateway = await startGateway({
        // graygate's defaults otherwise (upstream.maxConnections 1024 ≥ the 300 streams).
        versions: {
          v1: {
            entry: entries.worker,
            weight: 1,
            instances: args.instances,
            upstream: { format: 'openai', url: mock.url },
          },
        },
        logLevel: args.logLevel,
        root: entries.root,
        ...(r.key === 'direct-streams' || r.key === 'baseline-direct-streams'
          ? { limits: { directStreams: true } }
          : {}),
        ...launch,
        signal,
      });
      stops.push(gateway.stop);
      // Every worker's CPU and RSS count; the small workload's helpers front the first.
      const workerPids = (await gateway.workers()).map((w) => w.pid);
      const workerPid = workerPids[0]!;
      const worker = workerAddress(workerPid);
      if (worker === undefined)
        notes.push(
          `${r.label}: its worker's address was not found in /proc; the small-request columns in front of it are skipped.`,
        );
      builds.push({
        key: r.key,
        label: r.label,
        root: entries.root,
        gateway,
        masterPid: gateway.pid,
        workerPid,
        worker,
      });
      paths.push({
        key: r.key,
        label: r.label,
        base: `${gateway.url}/v1`,
        pids: { master: [gateway.pid], worker: workerPids },
      });
    }
    for (const b of builds) notes.push(`${b.label}: ${b.root} (master pid ${b.masterPid}, worker pid ${b.workerPid}).`);
    if (args.cpuProfDir !== undefined)
      notes.push(
        `graygate and the node proxy ran with --cpu-prof (profiles in ${args.cpuProfDir}/<graygate|baseline|node>/CPU.<date>.<time>.<pid>.*.cpuprofile): its CPU figures include the profiler's cost.`,
      );
    return { mockPid: mockProcess.pid, mockBase: mock.url, paths, builds, notes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The small-request columns of one build: graygate, the node proxy and nginx in front of its worker, the worker alone.
 */
export interface SmallTarget {
  build: GraygateBuild['key'];
  kind: 'graygate' | 'node' | 'nginx' | 'worker' | 'onehop';
  label: string;
  url: string;
  /** Set when the target is only reachable over a unix socket (a worker that serves the master over one). */
  socketPath?: string;
  /** The front process(es) whose CPU is reported; empty for the worker alone. */
  pids: number[];
}

export async function startSmallTargets(
  setup: SseSetup,
  args: Args,
  progress: Progress,
  signal: AbortSignal,
): Promise<{ targets: SmallTarget[]; stop: () => Promise<void> }> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  const targets: SmallTarget[] = [];
  const nginxBinary = args.paths.includes('nginx') ? findNginx() : undefined;
  try {
    for (const b of setup.builds) {
      targets.push({ build: b.key, kind: 'graygate', label: b.label, url: b.gateway.url, pids: [b.masterPid] });
      // limits.directStreams answers GET /v1/models as IPC calls once the worker holds a connection; in front of its
      // worker, the node proxy and nginx would measure the same worker again.
      if (b.key === 'direct-streams' || b.key === 'baseline-direct-streams') continue;
      const w = b.worker;
      if (w === undefined) continue;
      progress.phase(
        `starting the node proxy${nginxBinary === undefined ? '' : ' and nginx'} in front of ${b.label}'s worker (${w.kind === 'tcp' ? w.hostPort : w.socketPath})`,
      );
      if (args.paths.includes('node')) {
        const node = await startNaiveProxy({
          mode: 'minimal',
          targetUrl: w.kind === 'tcp' ? w.url : 'http://localhost',
          ...(w.kind === 'unix' ? { socketPath: w.socketPath } : {}),
          signal,
        });
        stops.push(node.stop);
        targets.push({
          build: b.key,
          kind: 'node',
          label: `node:http pipe proxy → ${b.label}'s worker`,
          url: node.url,
          pids: [node.pid],
        });
      }
      if (args.paths.includes('onehop')) {
        const onehop = await startTwoProcessPrototype(
          {
            ONEHOP_TARGET: w.kind === 'tcp' ? w.url : 'http://localhost',
            ...(w.kind === 'unix' ? { ONEHOP_SOCKET: w.socketPath } : {}),
          },
          signal,
        );
        stops.push(onehop.stop);
        targets.push({
          build: b.key,
          kind: 'onehop',
          label: `one-hop prototype → ${b.label}'s worker`,
          url: onehop.url,
          pids: [onehop.pid, onehop.backPid],
        });
      }
      // nginx takes `unix:/path` as an upstream server too (its worker must be allowed to open the socket). One that
      // is installed but does not start is skipped here too; the streaming paths' notes already say why.
      const nginx =
        nginxBinary === undefined
          ? undefined
          : await startNginxIfAble({
              upstream: w.kind === 'tcp' ? w.hostPort : `unix:${w.socketPath}`,
              keepalive: 64,
              signal,
            });
      if (nginx !== undefined && !('skipped' in nginx)) {
        stops.push(nginx.stop);
        targets.push({
          build: b.key,
          kind: 'nginx',
          label: `nginx → ${b.label}'s worker`,
          url: nginx.url,
          pids: processGroupMembers(nginx.pid),
        });
      }
      if (args.paths.includes('direct')) {
        targets.push({
          build: b.key,
          kind: 'worker',
          label: `${b.label}'s worker alone`,
          url: w.kind === 'tcp' ? w.url : 'http://localhost',
          ...(w.kind === 'unix' ? { socketPath: w.socketPath } : {}),
          pids: [],
        });
      }
    }
    return { targets, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** ", --max-semi-space-size=1" for a label, or nothing. */
function flagNote(flags: readonly string[]): string {
  return flags.length === 0 ? '' : `, ${flags.join(' ')}`;
}
