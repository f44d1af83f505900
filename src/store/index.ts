export { LOG_ROW_BYTES, Store, logLineCost } from './store.ts';
export { MIGRATIONS, type Migration } from './migrations/index.ts';
export type * from './types.ts';
