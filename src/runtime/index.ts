export * from './protocol.ts';
export { bundleHandler, buildHost, parseHandler } from './bundle.ts';
export { checkNodeBinary, INSTANCE_NODE_MIN_MAJOR, type InstanceNode } from './node-binary.ts';
