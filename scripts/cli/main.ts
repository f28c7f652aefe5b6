import { parseArgs } from 'node:util';
import { callAdmin, CliError, EXIT, type AdminClientOptions } from './admin-client.js';
import { formatStatus, table, type StatusBody } from './format.js';
import { runTop } from './top.js';

// `graygate <command>` (SPEC §7): a thin client of the admin API, plus `start`
// and `mock-upstream`, which run in this process.

const USAGE = `usage: graygate <command> [flags]

commands:
  start [--config F]                        run the gateway (same as npm start)
  status [--json] [--watch]                 versions, weights, workers (--watch: same as top)
  top                                       live per-version req/s, error %, p99, queue (Ctrl-C quits)
  weights v1=90 v2=10                       set weights atomically (others unchanged)
  add NAME --entry F [--weight N] [--instances N]
  deploy NAME [--entry F] [--instances N]   swap NAME's worker build without dropping requests
  rollback NAME                             deploy NAME's previous build
  remove NAME                               stop routing to NAME, drain and stop its workers
  reload                                    re-read the config file and apply the difference
  mock-upstream [--port N] [--format F]     run the embedded mock upstream alone

flags:
  --admin URL   admin API (default http://127.0.0.1:9000); token from GRAYGATE_ADMIN_TOKEN
  --json        machine-readable output`;

function usage(message: string): never {
  throw new CliError(`${message}\n${USAGE}`, EXIT.usage);
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) usage(`${flag} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      admin: { type: 'string' },
      json: { type: 'boolean', default: false },
      watch: { type: 'boolean', default: false },
      config: { type: 'string' },
      entry: { type: 'string' },
      weight: { type: 'string' },
      instances: { type: 'string' },
      port: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...args] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    if (command === undefined && !values.help) process.exitCode = EXIT.usage;
    return;
  }
  const client: AdminClientOptions = {
    adminUrl: values.admin ?? process.env['GRAYGATE_ADMIN_URL'] ?? 'http://127.0.0.1:9000',
    token: process.env['GRAYGATE_ADMIN_TOKEN'],
  };
  const print = (value: unknown, human: () => string): void => {
    process.stdout.write(`${values.json ? JSON.stringify(value, null, 2) : human()}\n`);
  };
  const name = (): string => args[0] ?? usage(`${command} needs a version name`);

  switch (command) {
    case 'start': {
      if (values.config !== undefined) process.env['GRAYGATE_CONFIG'] = values.config;
      await import('../../master/main.js');
      return;
    }
    case 'mock-upstream': {
      const { runMockUpstreamCli } = await import('../../shared/mock-upstream/main.js');
      return runMockUpstreamCli({ port: positiveInt(values.port, '--port') ?? 0, format: values.format });
    }
    case 'top':
      return watch(client);
    case 'status': {
      if (values.watch) return watch(client);
      const status = await callAdmin<StatusBody>(client, 'GET', '/admin/status');
      return print(status, () => formatStatus(status));
    }
    case 'weights': {
      if (args.length === 0) usage('weights needs NAME=WEIGHT pairs, e.g. graygate weights v1=90 v2=10');
      const weights: Record<string, number> = {};
      for (const pair of args) {
        const m = /^([^=]+)=(\d+(?:\.\d+)?)$/.exec(pair);
        if (m === null) usage(`bad weight ${JSON.stringify(pair)}: use NAME=NUMBER`);
        weights[m[1]!] = Number(m[2]);
      }
      const status = await callAdmin<StatusBody>(client, 'PUT', '/admin/weights', weights);
      return print(status, () => table(['VERSION', 'WEIGHT'], Object.entries(status.versions).map(([n, v]) => [n, String(v.weight)])));
    }
    case 'add': {
      if (values.entry === undefined) usage('add needs --entry F');
      const body: Record<string, unknown> = { name: name(), entry: values.entry, weight: positiveInt(values.weight, '--weight') ?? 0 };
      const instances = positiveInt(values.instances, '--instances');
      if (instances !== undefined) body['instances'] = instances;
      const added = await callAdmin<unknown>(client, 'POST', '/admin/versions', body);
      return print(added, () => `added ${name()}`);
    }
    case 'deploy': {
      const body: Record<string, unknown> = {};
      if (values.entry !== undefined) body['entry'] = values.entry;
      const instances = positiveInt(values.instances, '--instances');
      if (instances !== undefined) body['instances'] = instances;
      const result = await callAdmin<{ lastDeploy: { from: string; to: string; durationMs: number; newPids: number[] } }>(client, 'POST', `/admin/versions/${encodeURIComponent(name())}/deploy`, body);
      const d = result.lastDeploy;
      return print(result, () => `deployed ${name()}: ${d.to} (pids ${d.newPids.join(', ')}) in ${d.durationMs} ms`);
    }
    case 'rollback': {
      const result = await callAdmin<{ lastDeploy: { to: string; durationMs: number } }>(client, 'POST', `/admin/versions/${encodeURIComponent(name())}/rollback`);
      return print(result, () => `rolled back ${name()} to ${result.lastDeploy.to} in ${result.lastDeploy.durationMs} ms`);
    }
    case 'remove': {
      const result = await callAdmin<unknown>(client, 'DELETE', `/admin/versions/${encodeURIComponent(name())}`);
      return print(result, () => `removed ${name()}`);
    }
    case 'reload': {
      const result = await callAdmin<{ applied: string[]; restartRequired: string[] }>(client, 'POST', '/admin/reload');
      return print(result, () => {
        const applied = result.applied.length === 0 ? 'nothing changed' : `applied: ${result.applied.join(', ')}`;
        return result.restartRequired.length === 0 ? applied : `${applied}\nneeds a restart to take effect: ${result.restartRequired.join(', ')}`;
      });
    }
    default:
      usage(`unknown command ${JSON.stringify(command)}`);
  }
}

function watch(client: AdminClientOptions): Promise<void> {
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  return runTop({ adminUrl: client.adminUrl, token: client.token, signal: stop.signal });
}

try {
  await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof CliError) {
    process.stderr.write(`graygate: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
    process.stderr.write(`graygate: ${(err as Error).message}\n`);
    process.exitCode = EXIT.usage;
  } else {
    throw err;
  }
}
