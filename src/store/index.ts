export { Store } from './store.ts';
export { MIGRATIONS, type Migration } from './migrations/index.ts';
export type * from './types.ts';
