import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

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

export const NetworkConfigSchema = z
  .object({
    bridge: z.string().min(1).max(15).default('petri0'),
    subnet: z.string().default('10.213.0.0/16'),
    /** Ready network namespaces kept for fast cold starts. */
    poolSize: z.number().int().min(0).default(4),
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

/** CPU placement of instances relative to the daemon's core (src/policy/placement.ts). */
export const PlacementConfigSchema = z
  .object({
    policy: z.enum(['pack-when-sequential', 'spread']).default('pack-when-sequential'),
    /** Length of the window the policy judges; placement changes at most this often. */
    intervalMs: z.number().int().min(10).default(50),
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
    queue: z
      .object({
        maxSize: z.number().int().min(0).default(100),
        maxWaitMs: z.number().int().min(0).default(30_000),
      })
      .strict()
      .prefault({}),
    keepAliveMs: z.number().int().min(0).default(600_000),
    maxInstancesPerFunction: z.number().int().positive().default(32),
    sandboxDriver: z.enum(['process']).default('process'),
    isolation: IsolationConfigSchema.prefault({}),
    resources: ResourceRulesSchema.prefault({}),
    network: NetworkConfigSchema.prefault({}),
    placement: PlacementConfigSchema.prefault({}),
    runtime: RuntimeConfigSchema.prefault({}),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
  })
  .strict();

export type NodeConfig = z.infer<typeof NodeConfigSchema>;
export type ResourceRules = z.infer<typeof ResourceRulesSchema>;
export type NetworkConfig = z.infer<typeof NetworkConfigSchema>;
export type IsolationConfig = z.infer<typeof IsolationConfigSchema>;

export function parseConfig(input: unknown): NodeConfig {
  return NodeConfigSchema.parse(input ?? {});
}
