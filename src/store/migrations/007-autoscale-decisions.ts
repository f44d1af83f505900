/**
 * Autoscaler decisions (src/node/autoscaler.ts): one row per autoscaled
 * function per decision, bounded by `autoscaling.decisionsKept` (the store
 * deletes the oldest rows as it inserts).
 */
export const migration = {
  version: 7,
  name: 'autoscale-decisions',
  up: `
    CREATE TABLE autoscale_decisions (
      seq INTEGER PRIMARY KEY,
      function_name TEXT NOT NULL,
      policy TEXT NOT NULL,
      at REAL NOT NULL,
      observed_stable REAL NOT NULL,
      observed_panic REAL NOT NULL,
      desired INTEGER NOT NULL,
      actual INTEGER NOT NULL,
      panic INTEGER NOT NULL
    );
    CREATE INDEX autoscale_decisions_function ON autoscale_decisions (function_name, seq);
  `,
};
