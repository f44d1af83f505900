/**
 * Bounded logs: what an invocation's log cap dropped, and the running size
 * of the logs table (line bytes plus a fixed cost per row), kept in step by
 * every insert and delete so expiry never has to scan the table to size it.
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
    INSERT INTO log_usage (id, bytes)
      SELECT 1, COALESCE(SUM(octet_length(line) + 64), 0) FROM logs;
  `,
};
