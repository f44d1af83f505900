import { parseConfig } from '../../src/config.ts';
import { resourcesFor, type SandboxSpec } from '../../src/sandbox/index.ts';
import { FakeDriver } from '../helpers/fake-driver.ts';
import { describeDriverCases, type DriverSubject } from './driver.case.ts';

/**
 * The pool tests' in-memory driver against the same cases as the process
 * driver: where it behaves otherwise, the pool tests would pass on a lie.
 */
function spec(id: string): SandboxSpec {
  return {
    instanceId: id,
    functionName: 'conformance',
    version: 1,
    codeDir: '/nonexistent/v1',
    cwd: '/nonexistent/v1/code',
    entry: { runtime: 'node', bundle: '/nonexistent/v1/bundle.mjs', exportName: 'handler' },
    env: {},
    resources: resourcesFor(128, parseConfig({}).resources),
    network: { inbound: false, egress: false },
  };
}

const fakeDriver: DriverSubject = {
  kind: 'driver',
  name: 'FakeDriver',
  make: async () => Object.assign(new FakeDriver(), { freezable: true }),
  spec: (_key, id) => spec(id),
  mechanisms: [],
  processes: false,
  memoryLimit: true,
  freezer: true,
  nodeTag: (key) => key,
  // In memory, a crash is a driver nobody closes: its sandboxes are just forgotten.
  crash: async (key) => {
    const driver = new FakeDriver();
    const ids = [`${key}-crashed-1`, `${key}-crashed-2`];
    for (const id of ids) await driver.create(spec(id));
    return ids;
  },
  crashLeavesTraces: false,
  instanceLeftovers: async () => [],
  leftovers: async () => [],
};

describeDriverCases(fakeDriver);
