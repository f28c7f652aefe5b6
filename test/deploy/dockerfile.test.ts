import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig } from '../../shared/config.js';
import { DEFAULTS } from '../../shared/defaults.js';
import { configPath } from '../../master/config-file.js';
import { ROOT } from '../helpers/gateway.js';
import { instructionsOf, readDockerfile, type DockerStage } from '../helpers/dockerfile.js';

// Issue 14 part 1: what the image promises, checked on the Dockerfile's text. No container runtime
// runs here or in CI, so `docker build` is the user's step (README "Running on Kubernetes").

const dockerfile = readDockerfile(join(ROOT, 'Dockerfile'));
const [build, runtime] = dockerfile.stages as [DockerStage, DockerStage];
const runs = (stage: DockerStage): string[] => instructionsOf(stage, 'RUN').map((i) => i.args.join(' '));

t.test('the linter finds nothing', async (t) => {
  t.same(dockerfile.diagnostics, []);
});

t.test('two stages from the official node image: build, then runtime', async (t) => {
  t.equal(dockerfile.stages.length, 2);
  for (const stage of dockerfile.stages) {
    // node:20 or node:22, any variant, optionally pinned by digest; never `latest` or an untagged image.
    t.match(
      stage.image,
      /^node:(20|22)(\.\d+)*(-[a-z0-9]+)*(@sha256:[0-9a-f]{64})?$/,
      `${stage.name}: official node image`,
    );
  }
  t.ok(build.name !== null, 'the build stage is named, for COPY --from');
  t.ok(
    runs(build).some((r) => /^npm ci\b.*--ignore-scripts.*&& npx patch-package\b/.test(r)),
    "build: npm ci (prepare runs after the sources are copied), then patches/ (undici's fix, which --ignore-scripts " +
      'skipped as a postinstall: worker/upstream/undici-fix.ts)',
  );
  t.ok(runs(build).includes('npm run build'), 'build: tsc');
});

t.test('runtime: production dependencies only, dist/ from the build stage', async (t) => {
  const installs = runs(runtime).filter((r) => /\bnpm (ci|install|i)\b/.test(r));
  t.equal(installs.length, 1, 'one install');
  t.match(installs[0], /^npm ci\b/);
  t.match(installs[0], /--omit=dev/, 'no dev dependencies');
  t.match(installs[0], /--ignore-scripts/, '`prepare` would need tsc, a dev dependency');
  t.notOk(
    runs(runtime).some((r) => /\b(tsc|npm run build)\b/.test(r)),
    'nothing compiles in the runtime stage',
  );
  const fromBuild = instructionsOf(runtime, 'COPY').filter((c) => c.flags.includes(`from=${build.name}`));
  t.same(
    fromBuild.map((c) => c.args),
    [
      ['/app/dist', './dist'],
      ['/app/node_modules/undici', './node_modules/undici'],
      ['/app/node_modules/prom-client', './node_modules/prom-client'],
    ],
    'dist/, and undici and prom-client as patched in the build stage',
  );
});

t.test('runtime: a non-root user, both ports, SIGTERM, the shipped config by default', async (t) => {
  const users = instructionsOf(runtime, 'USER');
  t.ok(users.length > 0, 'USER is set');
  const user = users.at(-1)!.args[0]!.split(':')[0]!;
  t.notOk(user === 'root' || user === '0', `runs as ${user}, not root`);
  t.match(user, /^[1-9]\d*$/, 'numeric, so Kubernetes runAsNonRoot can verify it');

  const exposed = instructionsOf(runtime, 'EXPOSE').flatMap((i) => i.args.map((p) => Number(p.split('/')[0])));
  t.same(exposed.sort(), [DEFAULTS.listen.port, DEFAULTS.admin.port].sort(), 'the gateway and the admin port');

  t.same(
    instructionsOf(runtime, 'STOPSIGNAL').map((i) => i.args),
    [['SIGTERM']],
  );

  // The default command: node itself (it handles SIGTERM), the master, the config shipped in the image.
  const entrypoint = instructionsOf(runtime, 'ENTRYPOINT').at(-1)?.args ?? [];
  const cmd = instructionsOf(runtime, 'CMD').at(-1)?.args ?? [];
  t.same(entrypoint, ['node', 'dist/master/main.js']);
  const config = configPath(cmd, {});
  t.equal(config, 'config/graygate.json');
  t.ok(
    instructionsOf(runtime, 'COPY').some((c) => c.args[0] === 'config'),
    'config/ is in the image',
  );
  const shipped = validateConfig(JSON.parse(readFileSync(join(ROOT, config), 'utf8')));
  t.ok(shipped.ok && shipped.value.admin.host === '127.0.0.1', 'the default config keeps admin on loopback');
});

t.test('.dockerignore lets in exactly what the Dockerfile copies', async (t) => {
  const lines = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  t.equal(lines[0], '*', 'an allowlist: everything is excluded first');
  const allowed = new Set(lines.slice(1).map((l) => l.replace(/^!/, '').replace(/\/$/, '')));
  t.ok(
    lines.slice(1).every((l) => l.startsWith('!')),
    'then only re-inclusions',
  );
  const sources = dockerfile.stages.flatMap((s) =>
    instructionsOf(s, 'COPY')
      .filter((c) => !c.flags.some((f) => f.startsWith('from=')))
      .flatMap((c) => c.args.slice(0, -1)),
  );
  for (const source of new Set(sources)) {
    t.ok(allowed.has(source.replace(/\/$/, '')), `${source} is in the build context`);
    t.ok(existsSync(join(ROOT, source)), `${source} exists`);
  }
  t.same(
    [...allowed].sort(),
    [...new Set(sources.map((s) => s.replace(/\/$/, '')))].sort(),
    'nothing allowed that is not copied',
  );
});
