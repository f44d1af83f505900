export * from './protocol.ts';
export {
  BindMessageSchema,
  FromInstanceSchema,
  parseBindMessage,
  parseFromInstance,
} from './schema.ts';
export { bundleHandler, buildHost, parseHandler } from './bundle.ts';
export { bundleSnapshotEntry } from './snapshot-bundle.ts';
export {
  applyFunctionEnv,
  encodeFunctionEnv,
  FUNCTION_ENV_VAR,
  RESERVED_ENV_PREFIX,
} from './env.ts';
export { checkNodeBinary, INSTANCE_NODE_MIN_MAJOR, type InstanceNode } from './node-binary.ts';
