/**
 * Bounded logs: what an invocation's log cap dropped, and the running size
 * of the logs table on disk (see storedLogBytes), kept in step by every
 * insert and delete so expiry never scans the table to size it. The store
 * fills the row in on open (it needs the size model, which is code).
 */
export const migration = {
  version: 3,
  name: 'log-bounds',
  up: `
    ALTER TABLE invocations ADD COLUMN logs_dropped_lines INTEGER;
    ALTER TABLE invocations ADD COLUMN logs_dropped_bytes INTEGER;
    CREATE TABLE log_usage (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      bytes INTEGER NOT NULL
    );
  `,
};
