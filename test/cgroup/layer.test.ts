import fs from 'node:fs';
import path from 'node:path';
import {
  CGROUP_PREFIX,
  cgroupLayer,
  detectCgroups,
  type CgroupLayerInstance,
} from '../../src/cgroup/index.ts';
import { parseConfig } from '../../src/config.ts';
import { resourcesFor } from '../../src/sandbox/index.ts';
import { cgroupTraces } from '../helpers/traces.ts';
import { describeLayerCases } from '../sandbox/layer.case.ts';

const NEEDED = ['cpu', 'cpuacct', 'memory', 'pids'];

describeLayerCases({
  kind: 'layer',
  name: 'cgroup layer',
  make: (tag, options = {}) =>
    cgroupLayer(parseConfig({ isolation: options.off ? { cgroups: 'off' } : {} }), tag),
  spec: (id) => ({
    instanceId: id,
    functionName: 'cgroup-conformance',
    version: 1,
    codeDir: '/tmp',
    cwd: '/tmp',
    entry: { runtime: 'exec', command: ['true'] },
    env: {},
    resources: resourcesFor(128, parseConfig({}).resources),
    network: { inbound: false, egress: false },
  }),
  missing: () => {
    const status = detectCgroups()
      .controllers()
      .find((c) => NEEDED.includes(c.name) && !c.usable);
    return status && `cgroup ${status.name}: ${status.reason}`;
  },
  makesTraces: true,
  // The instance's directory in every hierarchy, while it exists.
  traces: async (_tag, instance) =>
    ((instance as CgroupLayerInstance).cgroup?.procsFiles() ?? [])
      .map((file) => path.dirname(file))
      .filter((dir) => fs.existsSync(dir))
      .map((dir) => `cgroup ${dir}`),
  leftovers: (tag) => cgroupTraces(tag),
  cleanup: async (tag) => {
    await detectCgroups().cleanup(`${CGROUP_PREFIX}/${tag}`);
  },
});
