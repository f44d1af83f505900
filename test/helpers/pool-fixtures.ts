import type { SandboxSpec } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';

// What the pool tests on a fake driver share: a version record, the sandbox
// spec an instance of it gets, and a way to let queued callbacks run.

/** Version 1 of a `node` function with no code on disk. */
export function fakeRecord(name = 'f', spec: Record<string, unknown> = {}): FunctionRecord {
  return {
    name,
    version: 1,
    spec: parseSpec({ name, runtime: 'node', ...spec }),
    codeDir: '/nonexistent',
    createdAt: 0,
    updatedAt: 0,
  };
}

/** The sandbox spec of one instance of `fn`, sized from its memory. */
export function fakeSandboxSpec(fn: FunctionRecord, instanceId: string): SandboxSpec {
  return {
    instanceId,
    functionName: fn.name,
    version: fn.version,
    codeDir: fn.codeDir,
    cwd: fn.codeDir,
    entry: { runtime: 'node', bundle: '/nonexistent/bundle.mjs', exportName: 'handler' },
    env: {},
    resources: {
      cpu: 0.1,
      initCpu: 1,
      memoryMb: fn.spec.memoryMb,
      bandwidthMbit: 10,
      burstBytes: 1,
      pidsMax: 1,
      tmpSizeMb: 1,
    },
    network: fn.spec.network,
  };
}

/** Lets promise chains and callbacks of the current turn run; no time passes. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
