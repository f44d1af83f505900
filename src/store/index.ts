export { Store, logRowSizes, storedLogBytes, type LogRowSizes } from './store.ts';
export { MIGRATIONS, type Migration } from './migrations/index.ts';
export type * from './types.ts';
