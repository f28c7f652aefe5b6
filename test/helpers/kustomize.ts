import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import type { Teardown } from './gateway.js';

// Renders deploy/kubernetes as `kubectl apply -k` would (issue 14 part 5). CI's machines have
// kubectl; where it is missing, renderWithoutKubectl does what this base uses of kustomize (file
// resources, one configMapGenerator without hash suffix, an image tag, JSON-patch removals) and
// fails loudly on anything else, so every check still runs on the raw files. A test holds both
// renderings equal wherever kubectl exists.

const run = promisify(execFile);

/** Parses YAML strictly: a duplicated key or any warning is an error, not a silently lost field. */
export function parseYamlDocuments(text: string, source: string): unknown[] {
  const docs = parseAllDocuments(text, { strict: true, uniqueKeys: true, prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const problems = list.flatMap((d) => [...d.errors, ...d.warnings]).map((e) => e.message);
  if (problems.length > 0) throw new Error(`${source}: ${problems.join('\n')}`);
  return list.map((d) => d.toJS() as unknown).filter((o) => o !== null);
}

/** `kubectl kustomize DIR`, or undefined when kubectl is not installed. */
export async function kubectlKustomize(dir: string): Promise<unknown[] | undefined> {
  try {
    // Bounded: a kubectl that hangs (asking a cluster, a plugin) is killed and fails the test instead of holding it.
    const { stdout } = await run('kubectl', ['kustomize', dir], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 60_000,
      killSignal: 'SIGKILL',
    });
    return parseYamlDocuments(stdout, `kubectl kustomize ${dir}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Renders `base` plus `components` through a throw-away overlay, as a user's overlay would. */
export async function kubectlKustomizeOverlay(
  t: Teardown,
  base: string,
  components: string[],
): Promise<unknown[] | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-overlay-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // kustomize refuses absolute paths to kustomizations; relative ones from anywhere are fine.
  const rel = (p: string): string => relative(dir, p);
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      `resources: [${rel(base)}]`,
      `components: [${components.map(rel).join(', ')}]`,
      '',
    ].join('\n'),
  );
  return kubectlKustomize(dir);
}

const labels = z.record(z.string(), z.string());
const kustomizationSchema = z.strictObject({
  apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
  kind: z.literal('Kustomization'),
  resources: z.array(z.string()),
  configMapGenerator: z.array(
    z.strictObject({
      name: z.string(),
      files: z.array(z.string()),
      options: z.strictObject({ disableNameSuffixHash: z.literal(true), labels: labels.optional() }),
    }),
  ),
  images: z.array(z.strictObject({ name: z.string(), newTag: z.string() })),
});
const componentSchema = z.strictObject({
  apiVersion: z.literal('kustomize.config.k8s.io/v1alpha1'),
  kind: z.literal('Component'),
  resources: z.array(z.string()),
  patches: z.array(
    z.strictObject({
      target: z.strictObject({ group: z.string(), version: z.string(), kind: z.string(), name: z.string() }),
      patch: z.string(),
    }),
  ),
});
const removals = z.array(z.strictObject({ op: z.literal('remove'), path: z.string().startsWith('/') }));

type Obj = Record<string, unknown> & { kind?: string; metadata?: { name?: string } };

function readYaml(path: string): unknown[] {
  return parseYamlDocuments(readFileSync(path, 'utf8'), path);
}

/** The fallback renderer: the base's raw files, generated ConfigMap and image tag, then each component. */
export function renderWithoutKubectl(base: string, components: string[] = []): unknown[] {
  const k = kustomizationSchema.parse(readYaml(join(base, 'kustomization.yaml'))[0]);
  const objects = k.resources.flatMap((r) => readYaml(join(base, r))) as Obj[];
  for (const gen of k.configMapGenerator) {
    const data = Object.fromEntries(gen.files.map((f) => [basename(f), readFileSync(join(base, f), 'utf8')]));
    const metadata =
      gen.options.labels === undefined ? { name: gen.name } : { name: gen.name, labels: gen.options.labels };
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata, data });
  }
  for (const c of containersOf(objects)) {
    const image = k.images.find((i) => i.name === c.image);
    if (image !== undefined) c.image = `${image.name}:${image.newTag}`;
  }
  for (const dir of components) {
    const comp = componentSchema.parse(readYaml(join(dir, 'kustomization.yaml'))[0]);
    objects.push(...(comp.resources.flatMap((r) => readYaml(join(dir, r))) as Obj[]));
    for (const { target, patch } of comp.patches) {
      const hit = objects.find(
        (o) =>
          o.kind === target.kind &&
          o.metadata?.name === target.name &&
          o['apiVersion'] === `${target.group}/${target.version}`,
      );
      if (hit === undefined) throw new Error(`${dir}: patch target ${target.kind}/${target.name} not found`);
      for (const { path } of removals.parse(parseYamlDocuments(patch, `${dir} patch`)[0])) removeAt(hit, path);
    }
  }
  return objects;
}

function containersOf(objects: Obj[]): Array<{ image?: string }> {
  return objects.flatMap(
    (o) =>
      (o['spec'] as { template?: { spec?: { containers?: Array<{ image?: string }> } } } | undefined)?.template?.spec
        ?.containers ?? [],
  );
}

/** JSON-patch `remove` (RFC 6902) of an object member; the member must exist, as kustomize requires. */
function removeAt(target: Obj, pointer: string): void {
  const keys = pointer
    .slice(1)
    .split('/')
    .map((k) => k.replaceAll('~1', '/').replaceAll('~0', '~'));
  const last = keys.pop()!;
  let at: Record<string, unknown> = target;
  for (const key of keys) at = at[key] as Record<string, unknown>;
  if (at === undefined || !Object.hasOwn(at, last)) throw new Error(`remove ${pointer}: no such member`);
  delete at[last];
}
