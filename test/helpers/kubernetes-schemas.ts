import { z } from 'zod';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import {
  HorizontalPodAutoscaler,
  type IHorizontalPodAutoscaler,
} from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';

// Strict models of the Kubernetes objects in deploy/kubernetes (issue 14 part 5), three layers:
// 1. run time, zod strictObject at every level: a key the schema does not list fails, so a typo
//    such as `readinesProbe` (which Kubernetes would silently drop) fails the test;
// 2. run time, kubernetes-models' validate(): the object against the Kubernetes OpenAPI schema
//    (types, required fields, enums). It does NOT reject unknown fields, hence layer 1;
// 3. compile time, KnownFields below: every key these schemas list exists in the Kubernetes API
//    types (kubernetes-models 4.5.1 = Kubernetes 1.27), with a compatible type.
// A new field in a manifest therefore needs a line here: say what we rely on.

const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label');
const labels = z.record(z.string(), z.string());
const metadata = z.strictObject({ name: dnsLabel, labels: labels.optional() });
const selector = z.strictObject({ matchLabels: labels });
const count = z.number().int().min(0);
const port = z.number().int().min(1).max(65535);
const portName = z.string().regex(/^[a-z0-9-]{1,15}$/, 'must be an IANA_SVC_NAME');
const intOrPercent = z.union([count, z.string().regex(/^\d+%$/)]);
const quantity = z.string().regex(/^\d+(\.\d+)?(m|Ki|Mi|Gi)?$/, 'must be a quantity such as 250m or 256Mi');

const probe = z.strictObject({
  httpGet: z.strictObject({ path: z.string().startsWith('/'), port: z.union([port, portName]) }),
  initialDelaySeconds: count.optional(),
  periodSeconds: count.optional(),
  timeoutSeconds: count.optional(),
  failureThreshold: count.optional(),
});

const container = z.strictObject({
  name: dnsLabel,
  image: z.string().min(1),
  args: z.array(z.string()),
  ports: z.array(z.strictObject({ name: portName, containerPort: port })),
  env: z.array(
    z.strictObject({
      name: z.string(),
      value: z.string().optional(),
      valueFrom: z.strictObject({ secretKeyRef: z.strictObject({ name: dnsLabel, key: z.string() }) }).optional(),
    }),
  ),
  startupProbe: probe,
  readinessProbe: probe,
  livenessProbe: probe,
  lifecycle: z.strictObject({
    preStop: z.strictObject({ exec: z.strictObject({ command: z.array(z.string()).min(1) }) }),
  }),
  resources: z.strictObject({
    requests: z.strictObject({ cpu: quantity, memory: quantity }),
    limits: z.strictObject({ cpu: quantity, memory: quantity }),
  }),
  securityContext: z.strictObject({
    allowPrivilegeEscalation: z.boolean(),
    readOnlyRootFilesystem: z.boolean(),
    capabilities: z.strictObject({ drop: z.array(z.string()) }),
  }),
  // No subPath here on purpose: kubelet never updates a subPath mount (kubernetes #50345).
  volumeMounts: z.array(
    z.strictObject({ name: dnsLabel, mountPath: z.string().startsWith('/'), readOnly: z.boolean().optional() }),
  ),
});

export const deploymentSchema = z.strictObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('Deployment'),
  metadata,
  spec: z.strictObject({
    replicas: count.optional(), // absent when the HPA component owns it
    selector,
    strategy: z.strictObject({
      type: z.literal('RollingUpdate'),
      rollingUpdate: z.strictObject({ maxSurge: intOrPercent, maxUnavailable: intOrPercent }),
    }),
    template: z.strictObject({
      metadata: z.strictObject({ labels }),
      spec: z.strictObject({
        automountServiceAccountToken: z.boolean(),
        terminationGracePeriodSeconds: count,
        securityContext: z.strictObject({
          runAsNonRoot: z.boolean(),
          runAsUser: count,
          runAsGroup: count,
          seccompProfile: z.strictObject({ type: z.enum(['RuntimeDefault', 'Localhost']) }),
        }),
        topologySpreadConstraints: z.array(
          z.strictObject({
            maxSkew: count,
            topologyKey: z.string(),
            whenUnsatisfiable: z.enum(['DoNotSchedule', 'ScheduleAnyway']),
            labelSelector: selector,
          }),
        ),
        containers: z.array(container).length(1),
        volumes: z.array(
          z.strictObject({
            name: dnsLabel,
            configMap: z.strictObject({ name: dnsLabel }).optional(),
            emptyDir: z.strictObject({ sizeLimit: quantity }).optional(),
          }),
        ),
      }),
    }),
  }),
});

export const serviceSchema = z.strictObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata,
  spec: z.strictObject({
    type: z.literal('ClusterIP'),
    selector: labels,
    ports: z.array(z.strictObject({ name: portName, port, targetPort: z.union([port, portName]) })),
  }),
});

export const configMapSchema = z.strictObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('ConfigMap'),
  metadata,
  data: z.record(z.string(), z.string()),
});

export const pdbSchema = z.strictObject({
  apiVersion: z.literal('policy/v1'),
  kind: z.literal('PodDisruptionBudget'),
  metadata,
  spec: z.strictObject({ maxUnavailable: intOrPercent, selector }),
});

export const hpaSchema = z.strictObject({
  apiVersion: z.literal('autoscaling/v2'),
  kind: z.literal('HorizontalPodAutoscaler'),
  metadata,
  spec: z.strictObject({
    scaleTargetRef: z.strictObject({ apiVersion: z.literal('apps/v1'), kind: z.literal('Deployment'), name: dnsLabel }),
    minReplicas: count,
    maxReplicas: count,
    metrics: z.array(
      z.strictObject({
        type: z.literal('Resource'),
        resource: z.strictObject({
          name: z.enum(['cpu', 'memory']),
          target: z.strictObject({ type: z.literal('Utilization'), averageUtilization: count }),
        }),
      }),
    ),
  }),
});

export type DeploymentObject = z.output<typeof deploymentSchema>;
export type ServiceObject = z.output<typeof serviceSchema>;
export type ConfigMapObject = z.output<typeof configMapSchema>;
export type PdbObject = z.output<typeof pdbSchema>;
export type HpaObject = z.output<typeof hpaSchema>;
export type KubernetesObject = DeploymentObject | ServiceObject | ConfigMapObject | PdbObject | HpaObject;

// Layer 3. UnknownKeys is never when every key of S, at every depth, is a key of T; otherwise it
// is the path of the first key that is not, which then appears in the compiler's error message.
type UnknownKeys<S, T, P extends string = ''> = S extends readonly (infer SE)[]
  ? NonNullable<T> extends readonly (infer TE)[]
    ? UnknownKeys<SE, TE, `${P}[]`>
    : never
  : S extends object
    ? {
        [K in keyof S & string]: K extends keyof NonNullable<T>
          ? UnknownKeys<S[K], NonNullable<T>[K], `${P}.${K}`>
          : `${P}.${K}`;
      }[keyof S & string]
    : never;
type KnownFields<S, T> = [UnknownKeys<S, T>] extends [never]
  ? S extends T
    ? true
    : 'a field has a type Kubernetes does not accept'
  : UnknownKeys<S, T>;
/** @public A compile-time check: nothing reads it at run time. */
export const SCHEMAS_MATCH_KUBERNETES_TYPES: [
  KnownFields<DeploymentObject, IDeployment>,
  KnownFields<ServiceObject, IService>,
  KnownFields<ConfigMapObject, IConfigMap>,
  KnownFields<PdbObject, IPodDisruptionBudget>,
  KnownFields<HpaObject, IHorizontalPodAutoscaler>,
] = [true, true, true, true, true];

const KINDS = {
  Deployment: { schema: deploymentSchema, model: (o: unknown) => new Deployment(o as IDeployment) },
  Service: { schema: serviceSchema, model: (o: unknown) => new Service(o as IService) },
  ConfigMap: { schema: configMapSchema, model: (o: unknown) => new ConfigMap(o as IConfigMap) },
  PodDisruptionBudget: { schema: pdbSchema, model: (o: unknown) => new PodDisruptionBudget(o as IPodDisruptionBudget) },
  HorizontalPodAutoscaler: {
    schema: hpaSchema,
    model: (o: unknown) => new HorizontalPodAutoscaler(o as IHorizontalPodAutoscaler),
  },
} as const;

/** Layers 1 and 2 for one rendered object: its problems as `kind/name: path: message` lines; [] when valid. */
export function kubernetesProblems(object: unknown): string[] {
  const { kind, metadata: meta } = (object ?? {}) as { kind?: unknown; metadata?: { name?: unknown } };
  const at = `${String(kind)}/${String(meta?.name)}`;
  const entry = typeof kind === 'string' ? KINDS[kind as keyof typeof KINDS] : undefined;
  if (entry === undefined) return [`${at}: kind is not one graygate ships (${Object.keys(KINDS).join(', ')})`];
  const problems: string[] = [];
  const strict = entry.schema.safeParse(object);
  if (!strict.success) {
    for (const issue of strict.error.issues) {
      const path = issue.path.map(String).join('.');
      problems.push(`${at}: ${path === '' ? '(root)' : path}: ${issue.message}`); // names the unknown key
    }
  }
  try {
    entry.model(object).validate();
  } catch (err) {
    problems.push(`${at}: Kubernetes schema: ${(err as Error).message}`);
  }
  return problems;
}
