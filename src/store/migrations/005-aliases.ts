/**
 * Versions and aliases (issue 10): each version's code digest, so a
 * config-only version can show it shares its code; and a function's
 * aliases, each naming a version and optionally a second one that takes a
 * share of the traffic (a canary). Aliases go with their function.
 */
export const migration = {
  version: 5,
  name: 'aliases',
  up: `
    ALTER TABLE function_versions ADD COLUMN code_digest TEXT;
    CREATE TABLE aliases (
      function_name TEXT NOT NULL,
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      canary_version INTEGER,
      canary_weight REAL,
      created_at REAL NOT NULL,
      updated_at REAL NOT NULL,
      PRIMARY KEY (function_name, name)
    );
  `,
};
