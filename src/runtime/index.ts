export * from './protocol.ts';
export { bundleHandler, buildHost, parseHandler } from './bundle.ts';
