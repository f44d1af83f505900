export * from './protocol.ts';
export { FromInstanceSchema, parseFromInstance } from './schema.ts';
export { bundleHandler, buildHost, parseHandler } from './bundle.ts';
