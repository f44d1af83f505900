/** Functions, their versions, instances and their events, invocations and function logs. */
export const migration = {
  version: 1,
  name: 'core',
  up: `
    CREATE TABLE functions (
      name TEXT PRIMARY KEY,
      version INTEGER NOT NULL,
      created_at REAL NOT NULL,
      updated_at REAL NOT NULL
    );
    CREATE TABLE function_versions (
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      spec TEXT NOT NULL,
      code_dir TEXT NOT NULL,
      created_at REAL NOT NULL,
      PRIMARY KEY (name, version)
    );
    CREATE TABLE instance_events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      instance_id TEXT NOT NULL,
      function_name TEXT NOT NULL,
      version INTEGER NOT NULL,
      event TEXT NOT NULL,
      at REAL NOT NULL,
      details TEXT
    );
    CREATE INDEX instance_events_instance ON instance_events (instance_id);
    CREATE TABLE invocations (
      id TEXT PRIMARY KEY,
      function_name TEXT NOT NULL,
      version INTEGER NOT NULL,
      mode TEXT NOT NULL,
      status TEXT NOT NULL,
      start_path TEXT,
      instance_id TEXT,
      error_code TEXT,
      error_message TEXT,
      error_details TEXT,
      result TEXT,
      received_at REAL NOT NULL,
      dispatched_at REAL,
      started_at REAL,
      finished_at REAL,
      queued_ms REAL,
      init_ms REAL,
      execution_ms REAL,
      total_ms REAL,
      cpu_ms REAL,
      peak_memory_bytes INTEGER,
      net_rx_bytes INTEGER,
      net_tx_bytes INTEGER
    );
    CREATE INDEX invocations_function ON invocations (function_name, received_at);
    CREATE INDEX invocations_received ON invocations (received_at);
    CREATE INDEX invocations_status ON invocations (status);
    CREATE TABLE logs (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      function_name TEXT NOT NULL,
      version INTEGER NOT NULL,
      invocation_id TEXT,
      instance_id TEXT NOT NULL,
      stream TEXT NOT NULL,
      line TEXT NOT NULL,
      at REAL NOT NULL
    );
    CREATE INDEX logs_function ON logs (function_name, at);
    CREATE INDEX logs_invocation ON logs (invocation_id);
  `,
};
