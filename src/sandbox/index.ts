export type * from './types.ts';
export type { IsolationLayer, LayerInstance, InheritedDescriptor, WrapContext } from './layer.ts';
export { resourcesFor } from './resources.ts';
export {
  ProcessDriver,
  INHERITED_ENV,
  instancePath,
  type ProcessDriverOptions,
} from './process.ts';
export { KeptFile } from './kept-file.ts';
export { bwrapLayer } from './bwrap.ts';
export {
  findHostTool,
  resolveHostTools,
  TRUSTED_PATH,
  LAUNCH_TOOLS,
  type HostTools,
  type LaunchTool,
} from './host-tools.ts';
export { SandboxRoot } from './root.ts';
export { UidPool } from './uid-pool.ts';
export { userNamespaceFilter } from './seccomp.ts';
