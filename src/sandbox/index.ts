export type * from './types.ts';
export type { IsolationLayer, LayerInstance } from './layer.ts';
export { resourcesFor } from './resources.ts';
export { ProcessDriver, type ProcessDriverOptions } from './process.ts';
export { KeptFile } from './kept-file.ts';
export { bwrapLayer } from './bwrap.ts';
