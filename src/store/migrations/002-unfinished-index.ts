/**
 * The status index is only used to find invocations left queued or running
 * by a crash. Indexing every row cost a write per invocation on the hot
 * path; a partial index holds only the unfinished ones (async accepts).
 */
export const migration = {
  version: 2,
  name: 'unfinished-index',
  up: `
    DROP INDEX IF EXISTS invocations_status;
    CREATE INDEX invocations_unfinished ON invocations (status)
      WHERE status IN ('queued', 'running');
  `,
};
