import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createDriver } from '../../src/boot/driver.ts';
import { CGROUP_PREFIX, detectCgroups } from '../../src/cgroup/index.ts';
import { parseConfig, type NodeConfig } from '../../src/config.ts';
import { cleanupAll, nodeTagFrom } from '../../src/net/index.ts';
import { buildHost, bundleHandler } from '../../src/runtime/index.ts';
import {
  bwrapLayer,
  ProcessDriver,
  resourcesFor,
  type SandboxSpec,
} from '../../src/sandbox/index.ts';
import { missingNetMechanism } from '../helpers/test-namespace.ts';
import { tempDir } from '../helpers/tmp.ts';
import { cgroupTraces, killInstancesOf, netInstanceTraces, netTraces } from '../helpers/traces.ts';
import type { DriverSubject } from './driver.case.ts';
import type { SubjectRef } from './isolated.ts';

/**
 * The process driver as conformance subjects: once with no isolation layers
 * (plain child processes, no root needed), once with the layers the node
 * builds (createDriver: bwrap, network, cgroups). The second runs in a test
 * namespace (process-driver.test.ts passes `layeredRef`).
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULE = fileURLToPath(import.meta.url);
const CRASH_CHILD = path.join(HERE, 'crash-child.ts');
/** A crash child reuses its parent's build: it dies by SIGKILL and could not remove its own. */
const BUILT_ENV = 'PETRI_CONFORMANCE_BUILT';

interface Built {
  hostScript: string;
  /** Laid out like a deployed version: the code folder and the bundle beside it. */
  codeDir: string;
  cwd: string;
  bundle: string;
}

let built: Built | undefined;

/** Builds the instance host and the conventions handler's bundle, once per process. */
async function setup(): Promise<void> {
  const inherited = process.env[BUILT_ENV];
  built ??= inherited ? (JSON.parse(inherited) as Built) : await buildInTemp();
}

async function buildInTemp(): Promise<Built> {
  const dir = tempDir('petri-conformance-');
  const hostScript = path.join(dir, 'host', 'host.mjs');
  const codeDir = path.join(dir, 'v1');
  const cwd = path.join(codeDir, 'code');
  const bundle = path.join(codeDir, 'bundle.mjs');
  fs.mkdirSync(cwd, { recursive: true });
  fs.copyFileSync(path.join(HERE, 'conventions-handler.mjs'), path.join(cwd, 'index.mjs'));
  await Promise.all([buildHost(hostScript), bundleHandler(cwd, 'index.handler', bundle, 'code')]);
  return { hostScript, codeDir, cwd, bundle };
}

async function hostScript(): Promise<string> {
  await setup();
  return current().hostScript;
}

function current(): Built {
  if (!built) throw new Error('setup() has not run');
  return built;
}

function conventionSpec(id: string): SandboxSpec {
  const { codeDir, cwd, bundle } = current();
  return {
    instanceId: id,
    functionName: 'conformance',
    version: 1,
    codeDir,
    cwd,
    entry: { runtime: 'node', bundle, exportName: 'handler' },
    env: {},
    resources: resourcesFor(128, parseConfig({}).resources),
    network: { inbound: false, egress: false },
  };
}

/** A node's state dir is its identity: the tag of its cgroups and namespaces comes from it. */
function stateDirFor(key: string): string {
  return path.join(os.tmpdir(), `petri-conformance-${key}`);
}

function configFor(key: string): NodeConfig {
  return parseConfig({ stateDir: stateDirFor(key), logLevel: 'silent' });
}

function tagOf(key: string): string {
  return nodeTagFrom(path.resolve(stateDirFor(key)));
}

/**
 * A crash: a child process runs a driver for `key`, starts two sandboxes
 * (one mid-invocation) and is killed with SIGKILL, leaving whatever its
 * layers made.
 */
async function crashInChild(ref: SubjectRef, key: string): Promise<string[]> {
  await setup();
  const env = { ...process.env, [BUILT_ENV]: JSON.stringify(current()) };
  const args = ['--import', 'tsx', CRASH_CHILD, ref.module, ref.exportName, key];
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`crash child not ready:\n${output}`)),
        30_000,
      );
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const line = /^READY (.*)$/m.exec(output);
        if (!line) return;
        clearTimeout(timer);
        resolve(JSON.parse(line[1]) as string[]);
      });
      child.once('exit', (code) => reject(new Error(`crash child exited ${code}:\n${output}`)));
    });
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

export const plainRef: SubjectRef = { module: MODULE, exportName: 'plainProcessDriver' };
export const layeredRef: SubjectRef = { module: MODULE, exportName: 'layeredProcessDriver' };

export const plainProcessDriver: DriverSubject = {
  kind: 'driver',
  name: 'process driver, no isolation layers',
  setup,
  make: async () =>
    new ProcessDriver({
      hostScript: await hostScript(),
      layers: [],
      limits: { responseBytes: 6 * 1024 * 1024, logLineBytes: 16 * 1024 },
    }),
  spec: (_key, id) => conventionSpec(id),
  mechanisms: [],
  processes: true,
  memoryLimit: false,
  nodeTag: tagOf,
  crash: (key) => crashInChild(plainRef, key),
  crashLeavesTraces: false,
  instanceLeftovers: async () => [],
  leftovers: async () => [],
  cleanup: (key) => killInstancesOf(`${key}-`),
};

const CGROUP_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'];

function missingCgroups(): string | undefined {
  const status = detectCgroups()
    .controllers()
    .find((c) => CGROUP_CONTROLLERS.includes(c.name) && !c.usable);
  return status && `cgroup ${status.name}: ${status.reason}`;
}

function missingBwrap(): string | undefined {
  const [status] = bwrapLayer(parseConfig({})).mechanisms();
  return status.active ? undefined : `bwrap: ${status.reason}`;
}

export const layeredProcessDriver: DriverSubject = {
  kind: 'driver',
  name: 'process driver with the layers the node builds (bwrap, network, cgroups)',
  setup,
  make: async (key) => createDriver(configFor(key), await hostScript(), pino({ level: 'silent' })),
  spec: (_key, id) => conventionSpec(id),
  missing: () => missingNetMechanism() ?? missingBwrap() ?? missingCgroups(),
  mechanisms: [
    'bwrap',
    'netns',
    'shaping',
    'firewall',
    'egress-nat',
    'cgroup-cpu',
    'cgroup-memory',
    'cgroup-pids',
    'cgroup-freezer',
  ],
  processes: true,
  memoryLimit: true,
  freezer: true,
  nodeTag: tagOf,
  crash: (key) => crashInChild(layeredRef, key),
  crashLeavesTraces: true,
  instanceLeftovers: async (key) => {
    const tag = tagOf(key);
    const cgroups = (await cgroupTraces(tag)).filter((trace) => trace.includes(`/${tag}/`));
    return [...cgroups, ...(await netInstanceTraces(tag))];
  },
  leftovers: async (key) => {
    const tag = tagOf(key);
    return [...(await cgroupTraces(tag)), ...(await netTraces(tag))];
  },
  // Instance namespaces have global names; the bridge and chains go with the test namespace.
  cleanup: async (key) => {
    await killInstancesOf(`${key}-`);
    await detectCgroups().cleanup(`${CGROUP_PREFIX}/${tagOf(key)}`);
    await cleanupAll(tagOf(key));
  },
};
