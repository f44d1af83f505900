import { z } from 'zod';
import { PetriError } from '../errors.ts';
import { KEEP_ALIVE_POLICY_NAMES } from '../policy/index.ts';

/** A function name doubles as a URL segment, a cgroup name part and a folder name. */
const FUNCTION_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const FunctionNameSchema = z
  .string()
  .regex(
    FUNCTION_NAME,
    'must be 1–63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit',
  );

/**
 * FunctionNameSchema's test without zod, for the function URL door, which
 * checks every request's name (a safeParse there cost ~1% of the daemon).
 */
export function isFunctionName(name: string): boolean {
  return FUNCTION_NAME.test(name);
}

const CommandSchema = z.array(z.string().min(1)).min(1);

/** The whole env travels to the instance as one JSON value, which exec(2) caps at 128 KiB. */
const ENV_MAX_BYTES = 64 * 1024;

/**
 * A function's own environment. It applies only inside the sandbox, to the
 * handler and the commands it runs (never to Petri's launch chain), so any
 * portable name is allowed, LD_PRELOAD and NODE_OPTIONS included. Where it
 * names a variable Petri sets (PETRI_RUNTIME, PETRI_ADDRESS …), Petri's wins.
 */
const EnvSchema = z
  .record(
    z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]*$/,
        'env names are letters, digits and "_", not led by a digit',
      ),
    z.string().refine((value) => !value.includes('\0'), 'env values may not hold NUL characters'),
  )
  .refine((env) => Buffer.byteLength(JSON.stringify(env)) <= ENV_MAX_BYTES, {
    message: `env may hold at most ${ENV_MAX_BYTES / 1024} KiB (names and values as JSON)`,
  });

/*
 * Fields of DESIGN §7 that are not built yet accept only their "off" value, so a
 * spec that asks for one fails at deploy instead of being quietly ignored.
 */
/** Absent `policy`: the node config's default policy decides. */
const KeepAliveSchema = z
  .object({
    policy: z
      .enum(KEEP_ALIVE_POLICY_NAMES, {
        error: `must be one of ${KEEP_ALIVE_POLICY_NAMES.map((n) => `"${n}"`).join(', ')}`,
      })
      .optional(),
    ms: z
      .number()
      .int()
      .min(0)
      .max(24 * 3600_000)
      .optional(),
  })
  .strict()
  .refine((k) => !(k.policy === 'greedy-dual' && k.ms !== undefined), {
    path: ['ms'],
    message: 'does not apply to "greedy-dual", which keeps instances while memory allows',
  });

/** TCP ports an instance may be connected to on (by the node and its group's members). */
const PortSchema = z.number().int().min(1).max(65535);

const NetworkSchema = z
  .object({
    /**
     * `true`: the node and members of the instance's group may connect to it
     * on any port; a list: on those TCP ports only; `false`: nothing may.
     */
    inbound: z
      .union([z.boolean(), z.array(PortSchema).min(1).max(64)])
      .default(false)
      .transform((value) =>
        Array.isArray(value) ? [...new Set(value)].sort((a, b) => a - b) : value,
      ),
    egress: z.boolean().default(false),
  })
  .strict();

/**
 * The function URL (`/fn/{name}`): open by default, as a Lambda URL of auth
 * type NONE (the function checks its callers), or behind the node's API token.
 */
const UrlSchema = z.object({ auth: z.enum(['none', 'token']).default('none') }).strict();

const QueueSchema = z
  .object({
    maxSize: z.number().int().min(0).optional(),
    maxWaitMs: z.number().int().min(0).optional(),
  })
  .strict();

/** Phase names (as `context.microtask` announces them) → CPU classes of the node's scheduler. */
const MicrotasksSchema = z
  .record(
    z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'phase names are 1–64 of A-Za-z0-9_.:-'),
    z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'class names are 1–32 of a-z0-9_- led by a letter'),
  )
  .refine((map) => Object.keys(map).length <= 64, { message: 'at most 64 phases may be mapped' });

/** The autoscaling policies (src/policy/autoscale.ts); on-demand is today's start-on-arrival. */
export const AUTOSCALE_POLICY_NAMES = ['on-demand', 'concurrency', 'rps'] as const;

/**
 * A function's autoscaling (Knative KPA parameters). Absent fields take the
 * node's `autoscaling` defaults; the window parameters mean nothing to
 * on-demand, so a spec that sets them with it is refused.
 */
export const AutoscalingSchema = z
  .object({
    policy: z.enum(AUTOSCALE_POLICY_NAMES).optional(),
    target: z.number().positive().max(100_000).optional(),
    targetUtilization: z.number().gt(0).max(1).optional(),
    stableWindowMs: z.number().int().min(1000).max(3600_000).optional(),
    panicWindowMs: z.number().int().min(100).max(3600_000).optional(),
    panicThreshold: z.number().min(1).max(100).optional(),
    scaleToZeroGraceMs: z.number().int().min(0).max(3600_000).optional(),
    maxScaleUpRate: z.number().gt(1).max(10_000).optional(),
    maxScaleDownRate: z.number().gt(1).max(10_000).optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.policy === 'on-demand') {
      for (const key of Object.keys(a).filter((k) => k !== 'policy'))
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: 'applies only to the concurrency and rps policies',
        });
    }
    if (
      a.panicWindowMs !== undefined &&
      a.stableWindowMs !== undefined &&
      a.panicWindowMs > a.stableWindowMs
    )
      ctx.addIssue({
        code: 'custom',
        path: ['panicWindowMs'],
        message: 'must not be longer than stableWindowMs',
      });
  });

export const SourceSchema = z.union([
  z.object({ path: z.string().min(1) }).strict(),
  z.object({ archive: z.string().min(1) }).strict(),
]);

/** The function spec of DESIGN §7 (`petri.json`), without its source. */
export const FunctionSpecSchema = z
  .object({
    name: FunctionNameSchema,
    runtime: z.enum(['node', 'exec', 'http', 'service']),
    handler: z
      .string()
      .regex(/^[^.]+(\.[^.]+)?$/, 'must look like "file.export", e.g. "index.handler"')
      .default('index.handler'),
    command: CommandSchema.optional(),
    memoryMb: z.number().int().min(64).max(10240).default(128),
    timeoutMs: z.number().int().min(1).max(900_000).default(30_000),
    concurrency: z.number().int().min(1).max(1000).default(1),
    maxInstances: z.number().int().min(1).max(1000).optional(),
    env: EnvSchema.prefault({}),
    keepAlive: KeepAliveSchema.prefault({}),
    network: NetworkSchema.prefault({}),
    /** Build a startup snapshot at deploy and restore new instances from it (node runtime only). */
    snapshot: z.boolean().default(false),
    queue: QueueSchema.prefault({}),
    url: UrlSchema.prefault({}),
    microtasks: MicrotasksSchema.optional(),
    autoscaling: AutoscalingSchema.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    if (spec.microtasks && Object.keys(spec.microtasks).length > 0 && spec.concurrency > 1) {
      // Classes set the instance's cgroup: two invocations in different phases would fight over it.
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['microtasks'],
        message:
          "needs concurrency 1: a phase sets its instance's CPU limits, which invocations sharing it would fight over",
      });
    }
    if (spec.runtime !== 'node' && !spec.command) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['command'],
        message: `is required for runtime "${spec.runtime}"`,
      });
    }
    if (spec.snapshot && spec.runtime !== 'node') {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['snapshot'],
        message: 'snapshots are built for the node runtime only',
      });
    }
  });

export type FunctionSpec = z.infer<typeof FunctionSpecSchema>;
export type AutoscalingSpec = z.infer<typeof AutoscalingSchema>;
export type FunctionSource = z.infer<typeof SourceSchema>;
export type Runtime = FunctionSpec['runtime'];
/** `network.inbound` as parsed: off, on for every port, or a sorted list of TCP ports. */
export type Inbound = FunctionSpec['network']['inbound'];

/** The deploy body: a spec plus where its code is. `name` may come from the URL. */
export const DeployBodySchema = z
  .object({ source: SourceSchema })
  .passthrough()
  .transform(({ source, ...spec }) => ({ source, spec }));

export interface FieldIssue {
  field: string;
  message: string;
}

/** Every invalid field of a zod failure, as `{field, message}` pairs. */
export function fieldIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown field(s) ${issue.keys.join(', ')}`;
    return { field: issue.path.join('.') || '(root)', message };
  });
}

function issuesMessage(what: string, issues: FieldIssue[]): string {
  return `${what}: ` + issues.map((i) => `${i.field} ${i.message}`).join('; ');
}

/** Validates a spec, throwing `InvalidSpec` that names every invalid field. */
export function parseSpec(input: unknown): FunctionSpec {
  const result = FunctionSpecSchema.safeParse(input);
  if (!result.success) {
    const issues = fieldIssues(result.error);
    throw new PetriError('InvalidSpec', issuesMessage('invalid function spec', issues), {
      issues,
    });
  }
  return result.data;
}

/** Validates a deploy body (spec + source), throwing `InvalidSpec` on every invalid field. */
export function parseDeployBody(
  nameFromUrl: string,
  body: unknown,
): { spec: FunctionSpec; source: FunctionSource } {
  const obj = body && typeof body === 'object' && !Array.isArray(body) ? { ...body } : undefined;
  if (!obj) throw new PetriError('InvalidSpec', 'deploy body must be a JSON object');
  const record = obj as Record<string, unknown>;
  if (record.name !== undefined && record.name !== nameFromUrl) {
    throw new PetriError(
      'InvalidSpec',
      `spec name "${String(record.name)}" does not match URL name "${nameFromUrl}"`,
      { issues: [{ field: 'name', message: 'does not match the URL' }] },
    );
  }
  record.name = nameFromUrl;
  const rawSource = record.source;
  delete record.source;
  const source = SourceSchema.safeParse(rawSource);
  const spec = FunctionSpecSchema.safeParse(record);
  const issues: FieldIssue[] = [];
  if (!source.success) {
    issues.push(
      rawSource === undefined
        ? { field: 'source', message: 'is required ({"path": ...} or {"archive": ...})' }
        : { field: 'source', message: 'must be {"path": "/abs/dir"} or {"archive": "<base64>"}' },
    );
  }
  if (!spec.success) issues.push(...fieldIssues(spec.error));
  if (issues.length > 0 || !spec.success || !source.success) {
    throw new PetriError('InvalidSpec', issuesMessage('invalid function spec', issues), {
      issues,
    });
  }
  return { spec: spec.data, source: source.data };
}
