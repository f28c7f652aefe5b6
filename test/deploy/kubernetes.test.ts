import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { isLoopbackHost, validateConfig, type Config } from '../../shared/config.js';
import { configPath, loadConfig } from '../../master/config-file.js';
import { ROOT } from '../helpers/gateway.js';
import { instructionsOf, readDockerfile } from '../helpers/dockerfile.js';
import {
  kubectlKustomize,
  kubectlKustomizeOverlay,
  parseYamlDocuments,
  renderWithoutKubectl,
} from '../helpers/kustomize.js';
import {
  kubernetesProblems,
  type ConfigMapObject,
  type DeploymentObject,
  type HpaObject,
  type KubernetesObject,
  type PdbObject,
  type ServiceObject,
} from '../helpers/kubernetes-schemas.js';

// Issue 14 parts 2 and 5: the kustomize base renders as `kubectl apply -k` renders it, every object
// passes a strict check (test/helpers/kubernetes-schemas.ts), and the pieces agree with each other,
// with the config they mount and with the Dockerfile. No cluster is needed.

const BASE = join(ROOT, 'deploy/kubernetes');
const HPA = join(BASE, 'components/hpa');
const CONFIG_KEY = 'graygate.json';

/**
 * The only ways the ConfigMap's config may differ from config/graygate.json (also listed in
 * deploy/kubernetes/kustomization.yaml). Anything else drifting between the two files fails.
 */
const K8S_CONFIG_DIFFERENCES: Array<{ path: string[]; value: unknown; why: string }> = [
  {
    path: ['listen', 'host'],
    value: '::',
    why: "every address, IPv6 and IPv4: an IPv6-only or IPv6-first cluster uses the pod's IPv6 address",
  },
  {
    path: ['admin', 'host'],
    value: '::',
    why: 'Prometheus scrapes /metrics on the pod IP; the token comes from a Secret',
  },
  {
    path: ['config', 'watch'],
    value: true,
    why: 'an edited ConfigMap applies as a reload, with no restart (SPEC §13)',
  },
  {
    path: ['limits', 'maxBufferedBodyBytes'],
    value: 32 * 1024 * 1024,
    why: "the container's memory limit (tested below)",
  },
  {
    path: ['limits', 'maxBufferedAnswerBytes'],
    value: 16 * 1024 * 1024,
    why: "the container's memory limit (tested below)",
  },
];

const kubectl = await kubectlKustomize(BASE);
const objects = (kubectl ?? renderWithoutKubectl(BASE)) as KubernetesObject[];
t.comment(
  kubectl === undefined
    ? 'kubectl not on PATH: rendered by the fallback in test/helpers/kustomize.ts'
    : 'rendered by kubectl kustomize',
);

function one<K extends KubernetesObject['kind']>(
  list: KubernetesObject[],
  kind: K,
): Extract<KubernetesObject, { kind: K }> {
  const found = list.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, rendered ${found.length}`);
  return found[0] as Extract<KubernetesObject, { kind: K }>;
}
const deployment: DeploymentObject = one(objects, 'Deployment');
const service: ServiceObject = one(objects, 'Service');
const configMap: ConfigMapObject = one(objects, 'ConfigMap');
const pdb: PdbObject = one(objects, 'PodDisruptionBudget');
const pod = deployment.spec.template.spec;
const container = pod.containers[0]!;
const configText = configMap.data[CONFIG_KEY] ?? '';
const validated = validateConfig(JSON.parse(configText));
if (!validated.ok) throw new Error(`the ConfigMap's config is invalid:\n${validated.problems.join('\n')}`);
const config: Config = validated.value;

/** A container port by number or name (what probes and the Service's targetPort may use). */
const portNumber = (port: number | string): number | undefined =>
  typeof port === 'number' ? port : container.ports.find((p) => p.name === port)?.containerPort;

t.test('the base renders exactly these objects, each valid and strict', async (t) => {
  t.same(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ConfigMap/graygate-config',
    'Deployment/graygate',
    'PodDisruptionBudget/graygate',
    'Service/graygate',
  ]);
  for (const object of objects) t.same(kubernetesProblems(object), [], `${object.kind}/${object.metadata.name}`);
});

t.test('the strict check catches what Kubernetes would silently drop', async (t) => {
  const typo = structuredClone(deployment) as unknown as {
    spec: { template: { spec: { containers: Array<Record<string, unknown>> } } };
  };
  const c = typo.spec.template.spec.containers[0]!;
  c['readinesProbe'] = c['readinessProbe'];
  delete c['readinessProbe'];
  // kubernetes-models alone accepts the typo: its JSON schemas allow unknown fields.
  t.doesNotThrow(() => new Deployment(typo as never).validate(), 'the Kubernetes schema alone misses it');
  t.match(kubernetesProblems(typo).join('\n'), /readinesProbe/, 'the strict layer names it');

  const subPath = structuredClone(deployment);
  (subPath.spec.template.spec.containers[0]!.volumeMounts[0] as Record<string, unknown>)['subPath'] = CONFIG_KEY;
  t.match(kubernetesProblems(subPath).join('\n'), /subPath/);

  const wrongType = structuredClone(deployment);
  (wrongType.spec.template.spec.containers[0]!.ports[0] as Record<string, unknown>)['containerPort'] = '8000';
  t.match(kubernetesProblems(wrongType).join('\n'), /Kubernetes schema: .*containerPort must be integer/);
});

t.test('probes, ports and selectors agree with the config and with each other', async (t) => {
  t.equal(deployment.spec.replicas, 2);
  t.same(
    [container.readinessProbe.httpGet.path, container.livenessProbe.httpGet.path, container.startupProbe.httpGet.path],
    ['/readyz', '/healthz', '/healthz'],
  );
  for (const probe of [container.readinessProbe, container.livenessProbe, container.startupProbe]) {
    t.equal(portNumber(probe.httpGet.port), config.listen.port, `${probe.httpGet.path} on the main port`);
  }
  t.equal(portNumber('admin'), config.admin.port, 'the admin port is declared for scraping');
  t.same(
    service.spec.ports.map((p) => portNumber(p.targetPort)),
    [config.listen.port],
    'the Service sends to the gateway only',
  );

  const podLabels = deployment.spec.template.metadata.labels;
  const selects = (selector: Record<string, string>): boolean =>
    Object.entries(selector).every(([k, v]) => podLabels[k] === v);
  t.ok(
    Object.keys(deployment.spec.selector.matchLabels).length > 0 && selects(deployment.spec.selector.matchLabels),
    'Deployment selector',
  );
  t.ok(selects(service.spec.selector), 'Service selector');
  t.ok(selects(pdb.spec.selector.matchLabels), 'PDB selector');
  t.equal(pdb.spec.maxUnavailable, 1);

  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  t.equal(container.image, `graygate:${version}`, 'the image tag follows package.json');
});

t.test('the grace period covers the preStop pause plus the drain', async (t) => {
  const [command, seconds, ...rest] = container.lifecycle.preStop.exec.command;
  t.equal(command, 'sleep');
  t.same(rest, []);
  const pauseS = Number(seconds);
  t.ok(Number.isInteger(pauseS) && pauseS > 0, `a pause of ${seconds} s`);
  const drainS = config.limits.shutdownTimeoutMs / 1000;
  // Kubernetes counts terminationGracePeriodSeconds from the start of preStop, then SIGKILLs.
  t.ok(
    pod.terminationGracePeriodSeconds > pauseS + drainS,
    `${pod.terminationGracePeriodSeconds} s > ${pauseS} s + ${drainS} s`,
  );
});

t.test('a burst of large prompts and answers held whole fit the memory limit', async (t) => {
  // Measured (docs/BENCHMARKS.md): 24 prompts of 9.5 MiB sent at once grew master + 2 workers from ~190 MB by
  // up to ~8× the budget (the master's buffers, refused ones awaiting GC included; the worker's raw, parsed
  // and converted copies and its preparing thread). The budget bounds them; idle processes and streams need
  // the rest. Each worker holds up to its answer budget (~1.25× in its heap, scripts/bench/aggregate-memory.ts),
  // and checks one answer at a time, its bytes, text and parsed value at once (~5× the answer, measured for an
  // OpenAI answer of log probabilities).
  const limitBytes = bytesOf(container.resources.limits.memory);
  const idleAndStreamsBytes = 256 * 1024 * 1024;
  const burstBytes = 8 * config.limits.maxBufferedBodyBytes;
  const answers = config.limits.maxBufferedAnswerBytes;
  const workers = Object.values(config.versions).reduce((sum, version) => sum + version.instances, 0);
  const largestAnswer = Math.min(64 * 1024 * 1024, answers);
  const answerBytes = workers * (1.25 * answers + 5 * largestAnswer);
  t.ok(
    idleAndStreamsBytes + burstBytes + answerBytes <= limitBytes,
    `256 MiB + 8 × ${config.limits.maxBufferedBodyBytes} B + ${workers} × (1.25 × ${answers} B + 5 × ` +
      `${largestAnswer} B) ≤ ${container.resources.limits.memory}`,
  );
});

/** A Kubernetes memory quantity (plain bytes, or Ki/Mi/Gi) in bytes. */
function bytesOf(quantity: string | number): number {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(quantity));
  if (match === null) throw new Error(`unexpected memory quantity ${quantity}`);
  const unit = match[2] === 'Gi' ? 1024 ** 3 : match[2] === 'Mi' ? 1024 ** 2 : match[2] === 'Ki' ? 1024 : 1;
  return Number(match[1]) * unit;
}

t.test('the ConfigMap is mounted as a directory and --config points inside it', async (t) => {
  const withSubPath = JSON.stringify(objects).match(/"subPath(Expr)?"/g) ?? [];
  t.same(withSubPath, [], 'no subPath anywhere: kubelet never updates one (kubernetes #50345)');
  const volume = pod.volumes.find((v) => v.configMap?.name === configMap.metadata.name);
  const mount = container.volumeMounts.find((m) => m.name === volume?.name);
  t.ok(volume !== undefined && mount !== undefined, 'the ConfigMap is a volume and it is mounted');
  const path = configPath(container.args, {});
  t.equal(posix.dirname(path), mount?.mountPath, 'the config file sits directly in the mounted directory');
  t.equal(posix.basename(path), CONFIG_KEY);
  t.equal(mount?.readOnly, true);
  t.equal(config.config.watch, true, 'config.watch applies edits of the ConfigMap');
});

t.test('admin is on loopback, or needs a token that comes from a Secret', async (t) => {
  const token = container.env.find((e) => e.name === 'GRAYGATE_ADMIN_TOKEN');
  if (isLoopbackHost(config.admin.host)) return t.pass('admin on loopback');
  t.equal(token?.value, undefined, 'never a literal token in the manifests');
  t.ok(token?.valueFrom?.secretKeyRef.name, 'GRAYGATE_ADMIN_TOKEN from a Secret');
  // What the gateway does with this ConfigMap, through its own loader.
  const dir = mkdtempSync(join(tmpdir(), 'graygate-k8s-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, CONFIG_KEY), configText);
  t.match(
    loadConfig(join(dir, CONFIG_KEY), {}),
    { ok: false, problems: [/admin.host: .*GRAYGATE_ADMIN_TOKEN/] },
    'refuses to start without the token',
  );
  t.match(
    loadConfig(join(dir, CONFIG_KEY), { GRAYGATE_ADMIN_TOKEN: 'from-the-secret' }),
    { ok: true },
    'starts with it',
  );
});

t.test('the pod runs as the image’s non-root user, locked down', async (t) => {
  t.equal(pod.securityContext.runAsNonRoot, true);
  t.ok(pod.securityContext.runAsUser > 0);
  t.equal(container.securityContext.allowPrivilegeEscalation, false);
  t.equal(container.securityContext.readOnlyRootFilesystem, true);
  t.same(container.securityContext.capabilities.drop, ['ALL']);
  const runtime = readDockerfile(join(ROOT, 'Dockerfile')).stages.at(-1)!;
  t.equal(
    instructionsOf(runtime, 'USER').at(-1)?.args[0],
    `${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`,
    'the Dockerfile USER',
  );
  const exposed = instructionsOf(runtime, 'EXPOSE').flatMap((i) => i.args.map(Number));
  t.same(
    exposed.sort(),
    container.ports.map((p) => p.containerPort).sort(),
    'the Dockerfile EXPOSEs the container ports',
  );
});

t.test('the ConfigMap equals config/graygate.json but for K8S_CONFIG_DIFFERENCES', async (t) => {
  t.equal(configText, readFileSync(join(BASE, CONFIG_KEY), 'utf8'), 'generated from the base copy, byte for byte');
  const shipped = JSON.parse(readFileSync(join(ROOT, 'config/graygate.json'), 'utf8')) as Record<string, unknown>;
  const expected = structuredClone(shipped);
  for (const { path, value, why } of K8S_CONFIG_DIFFERENCES) {
    const parent = path
      .slice(0, -1)
      .reduce<Record<string, unknown>>((at, key) => (at[key] ??= {}) as Record<string, unknown>, expected);
    t.not(JSON.stringify(parent[path.at(-1)!]), JSON.stringify(value), `${path.join('.')} really differs (${why})`);
    parent[path.at(-1)!] = value;
  }
  t.same(JSON.parse(configText), expected);
});

t.test('the HPA component: CPU autoscaling that owns the replica count', async (t) => {
  const rendered = ((await kubectlKustomizeOverlay(t, BASE, [HPA])) ??
    renderWithoutKubectl(BASE, [HPA])) as KubernetesObject[];
  for (const object of rendered) t.same(kubernetesProblems(object), [], `${object.kind}/${object.metadata.name}`);
  const hpa: HpaObject = one(rendered, 'HorizontalPodAutoscaler');
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
  t.same(
    hpa.spec.metrics.map((m) => m.resource.name),
    ['cpu'],
  );
  t.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas);
  t.equal(one(rendered, 'Deployment').spec.replicas, undefined, 'no fixed replicas to fight the HPA on re-apply');
  t.notOk(
    objects.some((o) => o.kind === 'HorizontalPodAutoscaler'),
    'not in the base',
  );
});

t.test(
  'the fallback renderer agrees with kubectl',
  { skip: kubectl === undefined && 'kubectl not on PATH' },
  async (t) => {
    const key = (o: unknown): string => `${(o as KubernetesObject).kind}/${(o as KubernetesObject).metadata.name}`;
    const sorted = (list: unknown[]): unknown[] => [...list].sort((a, b) => key(a).localeCompare(key(b)));
    t.same(sorted(renderWithoutKubectl(BASE)), sorted(kubectl!));
    t.same(sorted(renderWithoutKubectl(BASE, [HPA])), sorted((await kubectlKustomizeOverlay(t, BASE, [HPA]))!));
  },
);

t.test('every YAML file of the base parses strictly (no duplicate keys)', async (t) => {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.yaml') ? [join(dir, e.name)] : [],
    );
  const files = walk(BASE);
  t.ok(files.length >= 6);
  for (const file of files)
    t.doesNotThrow(() => parseYamlDocuments(readFileSync(file, 'utf8'), file), file.slice(ROOT.length + 1));
  t.ok(files.every((f) => dirname(f).startsWith(BASE)));
});
