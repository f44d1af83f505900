import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { PetriError } from './errors.ts';
import { KEEP_ALIVE_POLICY_NAMES, SNAPSHOT_TIER_POLICY_NAMES } from './policy/index.ts';
import { AUTOSCALE_POLICY_NAMES, fieldIssues } from './spec/index.ts';

/** The example functions shipped with Petri (`petri serve --examples` deploys them by path). */
export const EXAMPLES_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../examples',
);

/**
 * Folders `source.path` deploys may read by default: the shipped examples and
 * the folder the daemon was started in (a checkout or project), unless that is
 * `/`, which would open the whole host.
 */
export function defaultAllowedSourcePaths(): string[] {
  const cwd = process.cwd();
  return cwd === path.parse(cwd).root ? [EXAMPLES_DIR] : [EXAMPLES_DIR, cwd];
}

/**
 * Node configuration. Every field has a default, so `parseConfig({})` gives a
 * working node; the CLI's `serve` flags and a JSON config file override them.
 */
export const ResourceRulesSchema = z
  .object({
    /** MB of function memory that buys one vCPU (AWS Lambda's ratio). */
    mbPerVcpu: z.number().positive().default(1769),
    minVcpu: z.number().positive().default(0.05),
    /**
     * vCPUs an instance gets while it initialises, before its own share
     * applies (like Lambda's init boost): a 128 MB share of 0.07 vCPU would
     * stretch a 40 ms Node start to over half a second.
     */
    initVcpu: z.number().positive().default(1),
    /** Network bandwidth per vCPU-equivalent of memory, both directions. */
    mbitPerVcpu: z.number().positive().default(600),
    /** Bytes the TBF bucket may burst. */
    burstBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024),
    pidsMax: z.number().int().positive().default(256),
    tmpSizeMb: z.number().int().positive().default(64),
  })
  .strict();

/**
 * A destination instances with egress may reach although the firewall blocks
 * its range (the node's own addresses, link-local, private): one address and
 * port, e.g. a service on the gateway or a resolver on the LAN.
 */
export const EgressAllowSchema = z
  .object({
    address: z.ipv4(),
    port: z.number().int().min(1).max(65535),
    protocol: z.enum(['tcp', 'udp']).default('tcp'),
  })
  .strict();

export const NetworkConfigSchema = z
  .object({
    bridge: z.string().min(1).max(15).default('petri0'),
    subnet: z.string().default('10.213.0.0/16'),
    /** Ready network namespaces kept for fast cold starts. */
    poolSize: z.number().int().min(0).default(4),
    /** Exceptions to the egress block list; nothing else private is reachable. */
    egressAllow: z.array(EgressAllowSchema).max(256).default([]),
  })
  .strict();

export const IsolationConfigSchema = z
  .object({
    /** 'auto' uses a mechanism when the node can, and reports it when it cannot. */
    cgroups: z.enum(['auto', 'off']).default('auto'),
    bwrap: z.enum(['auto', 'off']).default('auto'),
    network: z.enum(['auto', 'off']).default('auto'),
    shaping: z.enum(['auto', 'off']).default('auto'),
    /** Remount cgroup2 with favordynmods so joining a cgroup costs µs, not ~20 ms. */
    fastCgroupMoves: z.enum(['auto', 'off']).default('auto'),
  })
  .strict();

const MiB = 1024 * 1024;

/** What a deploy may bring and how much of it the node keeps (defaults: Lambda's sizes). */
export const DeployConfigSchema = z
  .object({
    /** Largest `source.archive` (the tar.gz, before base64). */
    maxArchiveBytes: z
      .number()
      .int()
      .positive()
      .default(50 * MiB),
    /** Largest sum of file sizes of one version's code, unpacked or copied. */
    maxCodeBytes: z
      .number()
      .int()
      .positive()
      .default(250 * MiB),
    /** Most files, folders and symlinks in one version's code (each costs an inode). */
    maxEntries: z.number().int().positive().default(50_000),
    /** Absolute folders under which `source.path` deploys may read; nothing else. */
    allowedSourcePaths: z
      .array(z.string().refine((dir) => path.isAbsolute(dir), 'must be an absolute path'))
      .default(defaultAllowedSourcePaths),
    /** Versions whose code stays on disk per function (the current one included). */
    keepVersions: z.number().int().min(1).default(5),
  })
  .strict();

/** What instances run on. */
export const RuntimeConfigSchema = z
  .object({
    /**
     * Absolute path of the Node binary instances run (the daemon itself needs
     * Node 22+, instances Node 20+); checked at start (runtime/node-binary.ts).
     */
    nodeBinary: z
      .string()
      .min(1)
      .default(() => process.execPath),
  })
  .strict();

/** Who may use the API (README, "Security model"). */
export const AuthConfigSchema = z
  .object({
    /**
     * The API token. Unset: `PETRI_TOKEN`, else the one the node made in
     * `<stateDir>/api-token` on first start (loopback only).
     */
    token: z.string().min(16, 'must be at least 16 characters').optional(),
    /** `/metrics` without a token from anywhere; by default only from loopback. */
    publicMetrics: z.boolean().default(false),
  })
  .strict();

/** What the node keeps of functions' output (see src/node/logs.ts and Store.expireLogs). */
export const LogsConfigSchema = z
  .object({
    /** The longest stdout/stderr line kept; the rest is cut with a marker. */
    lineBytes: z
      .number()
      .int()
      .min(256)
      .default(16 * 1024),
    /** Log kept per invocation (each line counts its bytes plus 64); the rest is counted as dropped. */
    invocationBytes: z
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024),
    /** Lines older than this are deleted. */
    maxAgeMs: z
      .number()
      .int()
      .positive()
      .default(7 * 24 * 3600 * 1000),
    /**
     * The disk the logs may take, as the store estimates it from each row's
     * size (storedLogBytes); past it the oldest lines go.
     */
    maxBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(256 * 1024 * 1024),
    /** How often expiry runs (it also runs when an eighth of maxBytes was written since the last run). */
    expiryIntervalMs: z.number().int().min(10).default(60_000),
  })
  .strict();

/** What the node keeps of finished invocations and instance events (Store.expireHistory). */
export const HistoryConfigSchema = z
  .object({
    /** Finished invocations and instance events older than this are deleted (OpenWhisk-like retention). */
    maxAgeMs: z
      .number()
      .int()
      .positive()
      .default(7 * 24 * 3600 * 1000),
    /** The most invocation records kept; past it the oldest finished ones go. */
    maxInvocations: z.number().int().min(100).default(1_000_000),
    /** How often expiry runs. */
    expiryIntervalMs: z.number().int().min(10).default(60_000),
  })
  .strict();

/** Function groups and their coordination service (src/node/groups.ts, coordinator.ts). */
export const GroupsConfigSchema = z
  .object({
    /** The coordinator's TCP port on the bridge gateway; only group members may reach it. */
    coordinatorPort: z.number().int().min(1).max(65535).default(7946),
    /**
     * Members that open every port and are not shaped talk over a direct path
     * (a tc redirect between their host veths, src/net/group-path.ts) instead
     * of being routed through the node; false: always routed.
     */
    directPath: z.boolean().default(true),
    /** A group's lifetime when its request names none; its members are stopped after it. */
    defaultMaxDurationMs: z.number().int().min(1000).default(3_600_000),
    /** The longest lifetime a group may ask for. */
    maxDurationMs: z
      .number()
      .int()
      .min(1000)
      .default(24 * 3_600_000),
    /** The most members one group may have. */
    maxSize: z.number().int().min(1).max(1000).default(64),
  })
  .strict();

/** CPU placement of instances relative to the daemon's core (src/policy/placement.ts). */
export const PlacementConfigSchema = z
  .object({
    policy: z.enum(['pack-when-sequential', 'spread']).default('pack-when-sequential'),
    /** Length of the window the policy judges; placement changes at most this often. */
    intervalMs: z.number().int().min(10).default(50),
  })
  .strict();

/**
 * Start paths (src/policy/start-path.ts): which policy chooses how an
 * invocation gets an instance, and when idle instances are frozen.
 */
export const StartPathsConfigSchema = z
  .object({
    policy: z.enum(['warm-first', 'new-first']).default('warm-first'),
    /** Freeze idle instances (needs the cgroup freezer; without it they keep running). */
    pause: z.boolean().default(true),
    /** How long an instance stays idle and running before it is frozen (OpenWhisk's pause grace). */
    pauseGraceMs: z.number().int().min(0).default(50),
  })
  .strict();

/** A CPU class (src/sched): each microtask in it gets `vcpu`; together they share `cores`. */
const CpuClassSchema = z
  .object({
    vcpu: z.number().min(0.01).max(64),
    cores: z.array(z.number().int().min(0).max(1023)).min(1).max(1024),
  })
  .strict()
  .refine((c) => new Set(c.cores).size === c.cores.length, { message: 'cores must be distinct' })
  .refine((c) => c.vcpu <= c.cores.length, {
    message: 'vcpu must be at most the number of cores: a microtask could never be admitted',
  });

/** The classes every node has unless its config replaces them (the paper's I/O and CPU classes). */
export const DEFAULT_CPU_CLASSES = {
  io: { vcpu: 0.25, cores: [0] },
  cpu: { vcpu: 1, cores: [1] },
};

/** CPU scheduling (src/sched): task-based (today's behaviour, the default) or microtask-based. */
export const SchedulerConfigSchema = z
  .object({
    policy: z.enum(['task', 'microtask']).default('task'),
    allocation: z.enum(['static', 'dynamic']).default('static'),
    /** `io` and `cpu` exist by default; a class named here replaces or adds to them. */
    classes: z
      .record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/), CpuClassSchema)
      .default({})
      .transform((classes) => ({ ...DEFAULT_CPU_CLASSES, ...classes })),
    /** How often the dynamic allocator re-evaluates demand. */
    intervalMs: z.number().int().min(1).max(10_000).default(5),
    /** The dynamic allocator moves at most one core this often. */
    moveIntervalMs: z.number().int().min(1).max(60_000).default(20),
    /**
     * Microtask policy only: where the daemon (every thread) is pinned, in a
     * cpuset of its own. A phase transition is two frames between the daemon
     * and the instance; on a VM each one that crosses cores pays a wake-up
     * of the other vCPU, so within a class on the daemon's core a transition
     * takes about a third of the time it takes when its frames cross cores
     * (docs/research.md, "Transition cost"). `auto` (the default under the
     * microtask policy) is the lowest core of the heaviest class (the
     * largest share per microtask: `cpu` by default); a number is that core;
     * under dynamic allocation the pin follows the class that had the core
     * at start. The daemon's own CPU use then falls on that core, which
     * admission does not count. `off`: the daemon runs on every core (the
     * kernel chooses). The task policy takes `off` only (its CPU placement
     * pins the daemon).
     */
    daemonCore: z
      .union([z.number().int().min(0).max(1023), z.literal('auto'), z.literal('off')])
      .optional(),
  })
  .strict()
  .superRefine((scheduler, ctx) => {
    const pinned = scheduler.daemonCore !== undefined && scheduler.daemonCore !== 'off';
    if (pinned && scheduler.policy !== 'microtask') {
      ctx.addIssue({
        code: 'custom',
        path: ['daemonCore'],
        message:
          'only the microtask scheduler takes daemonCore: under the task scheduler CPU placement pins the daemon',
      });
    }
    const owner = new Map<number, string>();
    for (const [name, cls] of Object.entries(scheduler.classes)) {
      for (const core of cls.cores) {
        const other = owner.get(core);
        if (other !== undefined && scheduler.allocation === 'dynamic') {
          ctx.addIssue({
            code: 'custom',
            path: ['classes', name, 'cores'],
            message: `core ${core} is also class "${other}"'s: dynamic allocation moves whole cores, so classes may not share one`,
          });
        }
        owner.set(core, name);
      }
    }
  });

/**
 * Autoscaling defaults for functions whose spec does not set them
 * (src/policy/autoscale.ts; Knative KPA's defaults), and how often the node
 * samples load and decides.
 */
export const AutoscalingConfigSchema = z
  .object({
    policy: z.enum(AUTOSCALE_POLICY_NAMES).default('on-demand'),
    /** Invocations in flight per instance for `concurrency`; absent: the function's own `concurrency`. */
    concurrencyTarget: z.number().positive().optional(),
    /** Invocations per second per instance for `rps` (Knative's default). */
    rpsTarget: z.number().positive().default(200),
    targetUtilization: z.number().gt(0).max(1).default(0.7),
    stableWindowMs: z.number().int().min(1000).max(3600_000).default(60_000),
    panicWindowMs: z.number().int().min(100).max(3600_000).default(6_000),
    panicThreshold: z.number().min(1).max(100).default(2),
    scaleToZeroGraceMs: z.number().int().min(0).max(3600_000).default(30_000),
    maxScaleUpRate: z.number().gt(1).max(10_000).default(1000),
    maxScaleDownRate: z.number().gt(1).max(10_000).default(2),
    /** How often in-flight invocations are sampled. */
    sampleMs: z.number().int().min(10).max(60_000).default(250),
    /** How often each autoscaled function's instances are decided (Knative: 2 s). */
    tickMs: z.number().int().min(10).max(60_000).default(2_000),
    /** Decisions the store keeps (the oldest go first). */
    decisionsKept: z.number().int().min(100).max(10_000_000).default(100_000),
  })
  .strict()
  .refine((a) => a.panicWindowMs <= a.stableWindowMs, {
    path: ['panicWindowMs'],
    message: 'must not be longer than stableWindowMs',
  })
  .refine((a) => a.sampleMs <= a.tickMs, {
    path: ['sampleMs'],
    message: 'must not be longer than tickMs',
  });

/** One place snapshots may live (a tmpfs folder, a disk folder), fastest first in the list. */
export const SnapshotTierSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
    /** Absolute folder; the node makes it and empties it at start and stop. */
    dir: z.string().refine((dir) => dir.startsWith('/'), { error: 'must be an absolute path' }),
    capacityMb: z.number().int().positive(),
  })
  .strict();

/** Restore snapshots (src/snapshot): where they live and how long a build may take. */
export const SnapshotsConfigSchema = z
  .object({
    /** Storage tiers, preferred first; empty: one `disk` tier at `<stateDir>/snapshots`. */
    tiers: z
      .array(SnapshotTierSchema)
      .default([])
      .refine((tiers) => new Set(tiers.map((t) => t.name)).size === tiers.length, {
        error: 'tier names must be unique',
      }),
    /**
     * Where a new snapshot goes and what makes room: `lru-demote` (less
     * recently used snapshots move to a slower tier, and out of the last)
     * or `no-eviction` (the first tier with room; none: the build fails).
     */
    tierPolicy: z.enum(SNAPSHOT_TIER_POLICY_NAMES).default('lru-demote'),
    /** A build still running after this is killed (init that never ends, an open handle). */
    buildTimeoutMs: z.number().int().positive().default(60_000),
    /** The largest snapshot kept; a bigger one fails its build. */
    maxBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024 * 1024),
  })
  .strict();

/** Host folders an instance's root never shows, nor anything inside them. */
const NEVER_IN_ROOT = [
  '/root',
  '/home',
  '/var',
  '/srv',
  '/etc',
  '/run',
  '/proc',
  '/sys',
  '/dev',
  '/tmp',
  '/boot',
];
/** /etc entries that hold secrets (or lead to them): never copied into an instance's /etc. */
const SECRET_ETC = [
  'shadow',
  'shadow-',
  'gshadow',
  'gshadow-',
  'sudoers',
  'sudoers.d',
  'ssh',
  'ssl/private',
  'security',
];

function within(child: string, parent: string, sep: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

const RootPathSchema = z
  .string()
  .refine((p) => path.isAbsolute(p) && path.resolve(p) === p && p !== '/', {
    message: 'must be a normalised absolute path other than /',
  })
  .refine((p) => !NEVER_IN_ROOT.some((top) => within(p, top, '/')), {
    message: `may not be or lie under ${NEVER_IN_ROOT.join(', ')} (use sandbox.etcFiles for /etc)`,
  });

const EtcFileSchema = z
  .string()
  .refine(
    (p) =>
      !path.isAbsolute(p) &&
      path.normalize(p) === p &&
      !p.endsWith('/') &&
      p !== '.' &&
      !p.startsWith('..'),
    { message: 'must be a normalised path relative to /etc, e.g. "ssl/certs"' },
  )
  .refine((p) => !SECRET_ETC.some((s) => within(p, s, '/') || within(s, p, '/')), {
    message: `may not be, hold or lie under ${SECRET_ETC.join(', ')}`,
  });

/**
 * What an instance's root filesystem holds (README "Security model"). The
 * root starts empty; only these, the node binary, the instance host and the
 * function's own version folder are added, all read-only.
 */
export const SandboxConfigSchema = z
  .object({
    /**
     * Host paths shown read-only at the same place. One that is a symlink on
     * the host (merged /usr: /bin → usr/bin) becomes the same symlink;
     * missing ones are skipped.
     */
    rootPaths: z
      .array(RootPathSchema)
      .default(['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']),
    /**
     * Entries of the host's /etc copied into the instances' /etc at start
     * (missing ones skipped). passwd, group and hostname are always
     * generated; hosts and nsswitch.conf are generated unless listed here.
     */
    etcFiles: z
      .array(EtcFileSchema)
      .default([
        'resolv.conf',
        'ssl/certs',
        'ssl/openssl.cnf',
        'ca-certificates.conf',
        'pki/tls/certs',
        'pki/ca-trust/extracted',
        'ld.so.cache',
        'alternatives',
        'localtime',
        'timezone',
        'os-release',
        'protocols',
        'services',
        'mime.types',
        'gai.conf',
      ]),
    /**
     * Host uids (gid = uid) reserved for instances, one per live instance.
     * Nothing on the host may use them. The default sits above systemd's
     * container range (524288–1879048191), in space no distribution allocates.
     */
    uidRange: z
      .object({
        first: z.number().int().min(1000).max(4_000_000_000).default(1_879_048_192),
        count: z.number().int().min(1).max(1_000_000).default(65_536),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/**
 * Reactive prewarming (OpenWhisk's reactive prewarm): the set starts at
 * `count`, grows by one (up to `max`) each time one of its runtimes is bound,
 * and a runtime left unbound for `ttlMs` is stopped while more than `min` are ready.
 */
export const ReactivePrewarmSchema = z
  .object({
    min: z.number().int().min(0).max(64),
    max: z.number().int().min(1).max(64),
    ttlMs: z.number().int().min(100),
  })
  .strict()
  .refine((r) => r.min <= r.max, { path: ['min'], message: 'must not be more than max' });

/**
 * Prewarmed generic runtimes (src/node/prewarm-runtimes.ts): sandboxes that
 * have started Node and the instance host but no function, one set per
 * entry. A cold start of a node function with the same memoryMb, no inbound
 * ports and the same egress binds one of them (start path `prewarm`).
 */
export const PrewarmConfigSchema = z
  .object({
    runtime: z.literal('node', {
      error: 'must be "node": only the node runtime can bind a prewarmed runtime',
    }),
    memoryMb: z.number().int().min(64).max(10240),
    /** Ready runtimes kept (reactive: the starting number). */
    count: z.number().int().min(0).max(64),
    /** Whether the runtimes' network namespaces let traffic out (functions must match). */
    egress: z.boolean().default(false),
    reactive: ReactivePrewarmSchema.optional(),
  })
  .strict()
  .refine((p) => !p.reactive || (p.count >= p.reactive.min && p.count <= p.reactive.max), {
    path: ['count'],
    message: 'must lie between reactive.min and reactive.max',
  });

export const NodeConfigSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8080),
    stateDir: z.string().default(path.resolve('.petri')),
    /** How long an instance may take to start (load code, connect) before it is killed. */
    startTimeoutMs: z.number().int().positive().default(10_000),
    /** Sum of live instances' memoryMb the node allows; default 80 % of RAM. */
    memoryBudgetMb: z
      .number()
      .int()
      .positive()
      .default(() => Math.floor((os.totalmem() / 1024 / 1024) * 0.8)),
    payloadLimitBytes: z
      .number()
      .int()
      .positive()
      .default(6 * 1024 * 1024),
    /** The largest result (serialised JSON) a function may return; more is ResponseTooLarge. */
    responseLimitBytes: z
      .number()
      .int()
      .positive()
      .max(256 * 1024 * 1024)
      .default(6 * 1024 * 1024),
    queue: z
      .object({
        maxSize: z.number().int().min(0).default(100),
        maxWaitMs: z.number().int().min(0).default(30_000),
      })
      .strict()
      .prefault({}),
    /** The fixed policy's keep-alive (OpenWhisk's 10 minutes), and the hybrid policy's fallback. */
    keepAliveMs: z.number().int().min(0).default(600_000),
    /** Keep-alive policy of functions whose spec does not choose one (src/policy). */
    keepAlivePolicy: z.enum(KEEP_ALIVE_POLICY_NAMES).default('fixed'),
    maxInstancesPerFunction: z.number().int().positive().default(32),
    /** Only the process driver is built; a microVM driver would be another value. */
    sandboxDriver: z
      .literal('process', {
        error: 'must be "process": other sandbox drivers are not built yet',
      })
      .default('process'),
    isolation: IsolationConfigSchema.prefault({}),
    sandbox: SandboxConfigSchema.prefault({}),
    resources: ResourceRulesSchema.prefault({}),
    network: NetworkConfigSchema.prefault({}),
    placement: PlacementConfigSchema.prefault({}),
    startPaths: StartPathsConfigSchema.prefault({}),
    scheduler: SchedulerConfigSchema.prefault({}),
    autoscaling: AutoscalingConfigSchema.prefault({}),
    groups: GroupsConfigSchema.prefault({}),
    snapshots: SnapshotsConfigSchema.prefault({}),
    prewarm: z
      .array(PrewarmConfigSchema)
      .max(16)
      .default([])
      .refine(
        (list) => new Set(list.map((p) => `${p.memoryMb}/${p.egress}`)).size === list.length,
        { message: 'must not hold two entries with the same memoryMb and egress' },
      ),
    deploy: DeployConfigSchema.prefault({}),
    auth: AuthConfigSchema.prefault({}),
    logs: LogsConfigSchema.prefault({}),
    history: HistoryConfigSchema.prefault({}),
    runtime: RuntimeConfigSchema.prefault({}),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
  })
  .strict();

export type NodeConfig = z.infer<typeof NodeConfigSchema>;
export type SnapshotsConfig = z.infer<typeof SnapshotsConfigSchema>;
export type SnapshotTier = z.infer<typeof SnapshotTierSchema>;
export type PrewarmConfig = z.infer<typeof PrewarmConfigSchema>;
export type ResourceRules = z.infer<typeof ResourceRulesSchema>;
export type SchedulerConfig = z.infer<typeof SchedulerConfigSchema>;
export type NetworkConfig = z.infer<typeof NetworkConfigSchema>;
export type EgressAllow = z.infer<typeof EgressAllowSchema>;
/** An allow-list entry as written in a config file (protocol optional). */
export type EgressAllowInput = z.input<typeof EgressAllowSchema>;
export type IsolationConfig = z.infer<typeof IsolationConfigSchema>;
export type DeployConfig = z.infer<typeof DeployConfigSchema>;
export type SandboxConfig = z.infer<typeof SandboxConfigSchema>;
export type LogsConfig = z.infer<typeof LogsConfigSchema>;
export type AutoscalingConfig = z.infer<typeof AutoscalingConfigSchema>;
export type GroupsConfig = z.infer<typeof GroupsConfigSchema>;

/** Validates a node configuration, throwing `InvalidConfig` that names every invalid field. */
export function parseConfig(input: unknown): NodeConfig {
  const result = NodeConfigSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issues = fieldIssues(result.error);
  const text = issues.map((i) => `${i.field} ${i.message}`).join('; ');
  throw new PetriError('InvalidConfig', `invalid node configuration: ${text}`, { issues });
}
