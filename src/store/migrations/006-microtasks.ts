/**
 * Microtask phases per invocation (src/sched): the announced phases as one
 * JSON array (read back whole with the record, never queried by field), and
 * how many announcements went past the per-invocation cap.
 */
export const migration = {
  version: 6,
  name: 'microtasks',
  up: `
    ALTER TABLE invocations ADD COLUMN microtasks TEXT;
    ALTER TABLE invocations ADD COLUMN microtasks_dropped INTEGER;
  `,
};
