import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { ErrorCode } from '../errors.ts';
import { FunctionSpecSchema, type FunctionSpec } from '../spec/index.ts';
import { MIGRATIONS, type Migration } from './migrations/index.ts';
import type {
  AutoscaleDecisionQuery,
  AutoscaleDecisionRecord,
  ExpiredHistory,
  ExpiredLogs,
  AliasRecord,
  FunctionRecord,
  InstanceEventRecord,
  InvocationQuery,
  InvocationRecord,
  LogQuery,
  LogRecord,
  LogRetention,
  HistoryRetention,
} from './types.ts';

type Row = Record<string, unknown>;

/** How long buffered records wait before they are written in one transaction. */
const FLUSH_DELAY_MS = 25;
const FLUSH_MAX_PENDING = 500;
/** Log rows deleted per expiry step; the event loop runs between steps. */
const EXPIRY_BATCH_ROWS = 1000;
/** Size expiry deletes down to this share of maxBytes, so it does not run on every write. */
const EXPIRY_LOW_WATER = 7 / 8;
/** WAL bytes kept after a checkpoint: a large batch must not leave a large file behind. */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;
/** A log row's bytes besides its text columns: version, time, record header, cell varints. */
const LOG_ROW_BYTES = 30;
/** Its two index entries' bytes besides the text they hold: time, row ids, headers, pointers. */
const LOG_INDEX_BYTES = 26;

/** logRowSizes in SQL, for rows already stored. */
const LOG_ROW_SIZES_SQL = `octet_length(line) AS line,
  octet_length(function_name) + COALESCE(octet_length(invocation_id), 0) AS indexed,
  octet_length(instance_id) + length(stream) AS other`;

/** The byte sizes of a log row's text: its line, the columns its indexes hold, the rest. */
export interface LogRowSizes {
  line: number;
  indexed: number;
  other: number;
}

export function logRowSizes(log: LogRecord): LogRowSizes {
  return {
    line: Buffer.byteLength(log.line),
    indexed: Buffer.byteLength(log.functionName) + Buffer.byteLength(log.invocationId ?? ''),
    other: Buffer.byteLength(log.instanceId) + log.stream.length,
  };
}

/**
 * What a log row takes on disk, after SQLite's file format
 * (sqlite.org/fileformat2.html): rows share a page only whole, so a 2 KB
 * row takes a 4 KB page of its own; a row over `pageSize - 35` bytes keeps
 * a part on its page and the rest in overflow pages no other row uses; its
 * index entries (function name and time, invocation id) come on top.
 * Within 10 % of the file's growth for lines of 0 to 16 KB
 * (test/store/store.test.ts measures it).
 */
export function storedLogBytes(sizes: LogRowSizes, pageSize = 4096): number {
  const payload = sizes.line + sizes.indexed + sizes.other + LOG_ROW_BYTES;
  const maxLocal = pageSize - 35;
  const minLocal = Math.floor(((pageSize - 12) * 32) / 255) - 23;
  let local = payload;
  let overflowPages = 0;
  if (payload > maxLocal) {
    local = minLocal + ((payload - minLocal) % (pageSize - 4));
    if (local > maxLocal) local = minLocal;
    overflowPages = Math.ceil((payload - local) / (pageSize - 4));
  }
  // A cell is its local bytes, a 2-byte pointer and, when it spills, the first overflow page's number.
  const cell = local + 2 + (overflowPages > 0 ? 4 : 0);
  const rowsPerPage = Math.max(1, Math.floor((pageSize - 8) / cell));
  const index = sizes.indexed + LOG_INDEX_BYTES;
  return Math.ceil(pageSize / rowsPerPage) + overflowPages * pageSize + index;
}

/**
 * The node's SQLite store (WAL). Deploys and async accepts are written at
 * once; invocation results, instance events and log lines are buffered and
 * written in batches off the invoke hot path.
 */
export class Store {
  private readonly db: Database.Database;
  private pendingInvocations = new Map<string, InvocationRecord>();
  private pendingEvents: InstanceEventRecord[] = [];
  private pendingLogs: LogRecord[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly statements;
  /** The logs table's size on disk as log_usage holds it (see storedLogBytes). */
  private logUsage: number;
  private readonly pageSize: number;
  private logBytesSinceExpiry = 0;
  private retention: LogRetention | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiring: Promise<ExpiredLogs> | undefined;
  private onExpiryError: (err: unknown) => void = () => {};
  private historyTimer: NodeJS.Timeout | undefined;
  private expiringHistory: Promise<ExpiredHistory> | undefined;

  private constructor(db: Database.Database) {
    this.db = db;
    this.statements = {
      // Positional parameters and INSERT OR REPLACE: this runs once per
      // invocation, and named binding plus ON CONFLICT cost a third more.
      upsertInvocation: db.prepare(`
        INSERT OR REPLACE INTO invocations (id, function_name, version, mode, status, start_path,
          instance_id, error_code, error_message, error_details, result, received_at,
          dispatched_at, started_at, finished_at, queued_ms, init_ms, execution_ms, total_ms,
          cpu_ms, peak_memory_bytes, net_rx_bytes, net_tx_bytes, logs_dropped_lines,
          logs_dropped_bytes, http_method, http_path, http_status, microtasks, microtasks_dropped)
        VALUES (${Array(30).fill('?').join(', ')})`),
      insertEvent: db.prepare(`
        INSERT INTO instance_events (instance_id, function_name, version, event, at, details)
        VALUES (@instanceId, @functionName, @version, @event, @at, @details)`),
      insertLog: db.prepare(`
        INSERT INTO logs (function_name, version, invocation_id, instance_id, stream, line, at)
        VALUES (@functionName, @version, @invocationId, @instanceId, @stream, @line, @at)`),
      addLogBytes: db.prepare('UPDATE log_usage SET bytes = bytes + ? WHERE id = 1'),
      oldestLogs: db.prepare(`SELECT seq, at, ${LOG_ROW_SIZES_SQL} FROM logs ORDER BY seq LIMIT ?`),
      deleteLogsUpTo: db.prepare('DELETE FROM logs WHERE seq <= ?'),
      // Unfinished records (async accepts, running) are never expired: their callers still poll them.
      deleteStaleInvocations: db.prepare(`
        DELETE FROM invocations WHERE rowid IN (SELECT rowid FROM invocations
          WHERE received_at < ? AND status NOT IN ('queued', 'running')
          ORDER BY received_at LIMIT ?)`),
      deleteOldestInvocations: db.prepare(`
        DELETE FROM invocations WHERE rowid IN (SELECT rowid FROM invocations
          WHERE status NOT IN ('queued', 'running') ORDER BY received_at LIMIT ?)`),
      countInvocations: db.prepare('SELECT COUNT(*) AS n FROM invocations'),
      deleteStaleEvents: db.prepare(`
        DELETE FROM instance_events WHERE seq IN (SELECT seq FROM instance_events
          WHERE at < ? ORDER BY seq LIMIT ?)`),
    };
    this.pageSize = Number(db.pragma('page_size', { simple: true }));
    this.logUsage = this.loadLogUsage();
  }

  /** The log_usage row, made (by sizing every line once) when the store has none yet. */
  private loadLogUsage(): number {
    const row = this.db.prepare('SELECT bytes FROM log_usage WHERE id = 1').get() as
      { bytes: number } | undefined;
    if (row) return Number(row.bytes);
    let bytes = 0;
    const rows = this.db.prepare(`SELECT ${LOG_ROW_SIZES_SQL} FROM logs`);
    for (const sizes of rows.iterate() as Iterable<LogRowSizes>) {
      bytes += storedLogBytes(sizes, this.pageSize);
    }
    this.db.prepare('INSERT INTO log_usage (id, bytes) VALUES (1, ?)').run(bytes);
    return bytes;
  }

  /** Opens (creating if needed) the store at `file` and applies pending migrations. */
  static open(file: string): Store {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    migrate(db, MIGRATIONS);
    return new Store(db);
  }

  schemaVersion(): number {
    return Number(this.db.pragma('user_version', { simple: true }));
  }

  // ---- functions -------------------------------------------------------

  /** Records a new version of a function (synchronously: a deploy must be durable). */
  saveFunctionVersion(record: FunctionRecord): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO function_versions (name, version, spec, code_dir, created_at, code_digest)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(
          record.name,
          record.version,
          JSON.stringify(record.spec),
          record.codeDir,
          record.updatedAt,
          record.codeDigest ?? null,
        );
      this.db
        .prepare(
          `INSERT INTO functions (name, version, created_at, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET version=excluded.version, updated_at=excluded.updated_at`,
        )
        .run(record.name, record.version, record.createdAt, record.updatedAt);
    })();
  }

  /** The latest version of every deployed function. */
  listFunctions(): FunctionRecord[] {
    const rows = this.db
      .prepare(
        `SELECT f.name, f.version, f.created_at, f.updated_at, v.spec, v.code_dir, v.code_digest
         FROM functions f JOIN function_versions v ON v.name = f.name AND v.version = f.version
         ORDER BY f.name`,
      )
      .all() as Row[];
    return rows.map(toFunctionRecord);
  }

  getFunction(name: string): FunctionRecord | undefined {
    const row = this.db
      .prepare(
        `SELECT f.name, f.version, f.created_at, f.updated_at, v.spec, v.code_dir, v.code_digest
         FROM functions f JOIN function_versions v ON v.name = f.name AND v.version = f.version
         WHERE f.name = ?`,
      )
      .get(name) as Row | undefined;
    return row ? toFunctionRecord(row) : undefined;
  }

  /** The highest version number a function ever had (versions never repeat after a delete). */
  lastVersion(name: string): number {
    const row = this.db
      .prepare('SELECT MAX(version) AS v FROM function_versions WHERE name = ?')
      .get(name) as { v: number | null };
    return row.v ?? 0;
  }

  /** Removes the function and its aliases; version rows stay so numbers never repeat. */
  deleteFunction(name: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM functions WHERE name = ?').run(name);
      this.db.prepare('DELETE FROM aliases WHERE function_name = ?').run(name);
    })();
  }

  /**
   * The versions of the function as deployed now, oldest first: rows of an
   * earlier function of that name (deleted, then deployed again) are left out.
   */
  listVersions(name: string): FunctionRecord[] {
    const rows = this.db
      .prepare(
        `SELECT v.name, v.version, f.created_at, v.created_at AS updated_at, v.spec, v.code_dir,
           v.code_digest
         FROM function_versions v JOIN functions f ON f.name = v.name
         WHERE v.name = ? AND v.created_at >= f.created_at ORDER BY v.version`,
      )
      .all(name) as Row[];
    return rows.map(toFunctionRecord);
  }

  // ---- aliases -----------------------------------------------------------

  saveAlias(alias: AliasRecord): void {
    this.db
      .prepare(
        `INSERT INTO aliases (function_name, name, version, canary_version, canary_weight,
           created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(function_name, name) DO UPDATE SET version = excluded.version,
           canary_version = excluded.canary_version, canary_weight = excluded.canary_weight,
           updated_at = excluded.updated_at`,
      )
      .run(
        alias.functionName,
        alias.name,
        alias.version,
        alias.canary?.version ?? null,
        alias.canary?.weight ?? null,
        alias.createdAt,
        alias.updatedAt,
      );
  }

  /** A function's aliases, by name. */
  listAliases(functionName: string): AliasRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM aliases WHERE function_name = ? ORDER BY name')
      .all(functionName) as Row[];
    return rows.map(toAliasRecord);
  }

  /** Every alias of every function (loaded once at start). */
  allAliases(): AliasRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM aliases ORDER BY function_name, name')
      .all() as Row[];
    return rows.map(toAliasRecord);
  }

  /** Returns whether there was such an alias. */
  deleteAlias(functionName: string, name: string): boolean {
    return (
      this.db
        .prepare('DELETE FROM aliases WHERE function_name = ? AND name = ?')
        .run(functionName, name).changes > 0
    );
  }

  // ---- invocations -----------------------------------------------------

  /** Buffers an invocation record; a later record with the same id replaces it. */
  recordInvocation(record: InvocationRecord): void {
    this.pendingInvocations.set(record.id, record);
    this.scheduleFlush();
  }

  /** Writes an invocation record now (async accepts must survive a crash). */
  recordInvocationNow(record: InvocationRecord): void {
    this.pendingInvocations.delete(record.id);
    this.statements.upsertInvocation.run(...invocationParams(record));
  }

  getInvocation(id: string): InvocationRecord | undefined {
    const pending = this.pendingInvocations.get(id);
    if (pending) return pending;
    const row = this.db.prepare('SELECT * FROM invocations WHERE id = ?').get(id) as
      Row | undefined;
    return row ? toInvocationRecord(row) : undefined;
  }

  /** Recent invocations, newest first. */
  listInvocations(query: InvocationQuery): InvocationRecord[] {
    this.flush();
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.functionName) {
      where.push('function_name = ?');
      params.push(query.functionName);
    }
    if (query.since !== undefined) {
      where.push('received_at >= ?');
      params.push(query.since);
    }
    const sql = `SELECT * FROM invocations ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
      ORDER BY received_at DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, query.limit) as Row[];
    return rows.map(toInvocationRecord);
  }

  /**
   * Marks every invocation left queued or running by a crash as failed.
   * Returns how many it changed.
   */
  failUnfinished(code: ErrorCode, message: string, at: number): number {
    this.flush();
    return this.db
      .prepare(
        `UPDATE invocations SET status = 'failed', error_code = ?, error_message = ?,
           finished_at = ?, total_ms = ? - received_at
         WHERE status IN ('queued', 'running')`,
      )
      .run(code, message, at, at).changes;
  }

  // ---- instance events and logs ---------------------------------------

  recordInstanceEvent(record: InstanceEventRecord): void {
    this.pendingEvents.push(record);
    this.scheduleFlush();
  }

  listInstanceEvents(instanceId: string): InstanceEventRecord[] {
    this.flush();
    const rows = this.db
      .prepare('SELECT * FROM instance_events WHERE instance_id = ? ORDER BY seq')
      .all(instanceId) as Row[];
    return rows.map((row) => ({
      instanceId: String(row.instance_id),
      functionName: String(row.function_name),
      version: Number(row.version),
      event: String(row.event),
      at: Number(row.at),
      details: parseJson(row.details),
    }));
  }

  recordLog(record: LogRecord): void {
    this.pendingLogs.push(record);
    this.scheduleFlush();
  }

  /** What the written log lines take on disk, as storedLogBytes estimates it. */
  logBytes(): number {
    return this.logUsage;
  }

  /**
   * Expires logs from now on: every `expiryIntervalMs`, and soon after an
   * eighth of `maxBytes` was written since the last run. Stops at close.
   */
  startLogExpiry(retention: LogRetention, onError: (err: unknown) => void = () => {}): void {
    this.retention = retention;
    this.onExpiryError = onError;
    clearInterval(this.expiryTimer);
    this.expiryTimer = setInterval(() => this.expireSoon(), retention.expiryIntervalMs);
    this.expiryTimer.unref();
    this.expireSoon();
  }

  /**
   * Deletes log lines older than `maxAgeMs`, then, when the logs are over
   * `maxBytes`, the oldest lines until they are at 7/8 of it. Works in steps
   * of EXPIRY_BATCH_ROWS rows, each its own transaction, yielding to the
   * event loop between steps so invocations are not held up. One run at a
   * time: a call during a run gets that run.
   */
  expireLogs(retention: LogRetention, now: number = Date.now()): Promise<ExpiredLogs> {
    this.expiring ??= this.runExpiry(retention, now).finally(() => (this.expiring = undefined));
    return this.expiring;
  }

  /**
   * Expires invocation records and instance events every `expiryIntervalMs`
   * (and once now), so the history does not grow without bound. Stops at close.
   */
  startHistoryExpiry(retention: HistoryRetention, onError: (err: unknown) => void): void {
    clearInterval(this.historyTimer);
    const run = () => {
      if (this.db.open) this.expireHistory(retention).catch(onError);
    };
    this.historyTimer = setInterval(run, retention.expiryIntervalMs);
    this.historyTimer.unref();
    setImmediate(run);
  }

  /**
   * Deletes finished invocations older than `maxAgeMs`, then the oldest
   * finished ones past `maxInvocations`, then instance events older than
   * `maxAgeMs`; in steps of EXPIRY_BATCH_ROWS rows, each its own statement,
   * yielding to the event loop between steps. One run at a time.
   */
  expireHistory(retention: HistoryRetention, now: number = Date.now()): Promise<ExpiredHistory> {
    this.expiringHistory ??= this.runHistoryExpiry(retention, now).finally(
      () => (this.expiringHistory = undefined),
    );
    return this.expiringHistory;
  }

  private async runHistoryExpiry(
    retention: HistoryRetention,
    now: number,
  ): Promise<ExpiredHistory> {
    this.flush();
    const cutoff = now - retention.maxAgeMs;
    const expired: ExpiredHistory = { invocations: 0, instanceEvents: 0 };
    const steps = async (step: () => number): Promise<number> => {
      let total = 0;
      while (this.db.open) {
        const deleted = step();
        total += deleted;
        if (deleted < EXPIRY_BATCH_ROWS) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      return total;
    };
    const st = this.statements;
    expired.invocations += await steps(() =>
      Number(st.deleteStaleInvocations.run(cutoff, EXPIRY_BATCH_ROWS).changes),
    );
    if (!this.db.open) return expired;
    let excess = Number((st.countInvocations.get() as { n: number }).n) - retention.maxInvocations;
    while (excess > 0 && this.db.open) {
      const deleted = Number(
        st.deleteOldestInvocations.run(Math.min(excess, EXPIRY_BATCH_ROWS)).changes,
      );
      expired.invocations += deleted;
      // Only unfinished records are left past the bound: they stay.
      if (deleted === 0) break;
      excess -= deleted;
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!this.db.open) return expired;
    expired.instanceEvents += await steps(() =>
      Number(st.deleteStaleEvents.run(cutoff, EXPIRY_BATCH_ROWS).changes),
    );
    return expired;
  }

  /** A function's log lines, oldest first (the newest `limit` of them). */
  listLogs(query: LogQuery): LogRecord[] {
    this.flush();
    const where = ['function_name = ?'];
    const params: unknown[] = [query.functionName];
    if (query.invocationId) {
      where.push('invocation_id = ?');
      params.push(query.invocationId);
    }
    if (query.since !== undefined) {
      where.push('at >= ?');
      params.push(query.since);
    }
    const rows = this.db
      .prepare(
        `SELECT * FROM (SELECT * FROM logs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?)
         ORDER BY seq`,
      )
      .all(...params, query.limit) as Row[];
    return rows.map((row) => ({
      functionName: String(row.function_name),
      version: Number(row.version),
      invocationId: row.invocation_id === null ? undefined : String(row.invocation_id),
      instanceId: String(row.instance_id),
      stream: row.stream === 'stderr' ? 'stderr' : 'stdout',
      line: String(row.line),
      at: Number(row.at),
    }));
  }

  // ---- autoscaler decisions ----------------------------------------------

  /** Writes one round of decisions in a transaction and keeps only the newest `keep` rows. */
  recordAutoscaleDecisions(rows: readonly AutoscaleDecisionRecord[], keep: number): void {
    if (rows.length === 0 || !this.db.open) return;
    const insert = this.db.prepare(`
      INSERT INTO autoscale_decisions (function_name, policy, at, observed_stable, observed_panic,
        desired, actual, panic) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    const trim = this.db.prepare('DELETE FROM autoscale_decisions WHERE seq <= ?');
    this.db.transaction(() => {
      let last = 0;
      for (const r of rows) {
        const info = insert.run(
          r.functionName,
          r.policy,
          r.at,
          r.observedStable,
          r.observedPanic,
          r.desired,
          r.actual,
          r.panic ? 1 : 0,
        );
        last = Number(info.lastInsertRowid);
      }
      if (last > keep) trim.run(last - keep);
    })();
  }

  /** Recent decisions, newest first. */
  listAutoscaleDecisions(query: AutoscaleDecisionQuery): AutoscaleDecisionRecord[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.functionName) {
      where.push('function_name = ?');
      params.push(query.functionName);
    }
    if (query.since !== undefined) {
      where.push('at >= ?');
      params.push(query.since);
    }
    const sql = `SELECT * FROM autoscale_decisions ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
      ORDER BY seq DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, query.limit) as Row[];
    return rows.map((row) => ({
      functionName: String(row.function_name),
      policy: String(row.policy),
      at: Number(row.at),
      observedStable: Number(row.observed_stable),
      observedPanic: Number(row.observed_panic),
      desired: Number(row.desired),
      actual: Number(row.actual),
      panic: row.panic === 1,
    }));
  }

  // ---- batching ----------------------------------------------------------

  /** Writes every buffered record in one transaction. */
  flush(): void {
    if (!this.db.open) return;
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (
      this.pendingInvocations.size === 0 &&
      this.pendingEvents.length === 0 &&
      this.pendingLogs.length === 0
    ) {
      return;
    }
    const invocations = [...this.pendingInvocations.values()];
    const events = this.pendingEvents;
    const logs = this.pendingLogs;
    this.pendingInvocations = new Map();
    this.pendingEvents = [];
    this.pendingLogs = [];
    let logBytes = 0;
    this.db.transaction(() => {
      for (const record of invocations) {
        this.statements.upsertInvocation.run(...invocationParams(record));
      }
      for (const event of events) {
        this.statements.insertEvent.run({
          ...event,
          details: event.details === undefined ? null : JSON.stringify(event.details),
        });
      }
      for (const log of logs) {
        this.statements.insertLog.run({ ...log, invocationId: log.invocationId ?? null });
        logBytes += storedLogBytes(logRowSizes(log), this.pageSize);
      }
      if (logBytes > 0) this.statements.addLogBytes.run(logBytes);
    })();
    this.logUsage += logBytes;
    this.logBytesSinceExpiry += logBytes;
    if (this.retention && this.logBytesSinceExpiry >= this.retention.maxBytes / 8) {
      this.expireSoon();
    }
  }

  close(): void {
    if (!this.db.open) return;
    clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
    clearInterval(this.historyTimer);
    this.historyTimer = undefined;
    this.flush();
    this.db.close();
  }

  private expireSoon(): void {
    const retention = this.retention;
    if (!retention || this.expiring || !this.db.open) return;
    setImmediate(() => {
      if (this.db.open) this.expireLogs(retention).catch(this.onExpiryError);
    });
  }

  private async runExpiry(retention: LogRetention, now: number): Promise<ExpiredLogs> {
    this.logBytesSinceExpiry = 0;
    const cutoff = now - retention.maxAgeMs;
    const target =
      this.logUsage > retention.maxBytes
        ? Math.floor(retention.maxBytes * EXPIRY_LOW_WATER)
        : Number.POSITIVE_INFINITY;
    const expired: ExpiredLogs = { rows: 0, bytes: 0 };
    while (this.db.open) {
      const step = this.expireStep(cutoff, target);
      expired.rows += step.rows;
      expired.bytes += step.bytes;
      if (!step.more) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return expired;
  }

  /** Deletes the oldest lines that are past `cutoff` or over `target` bytes, up to one batch. */
  private expireStep(cutoff: number, target: number): ExpiredLogs & { more: boolean } {
    const rows = this.statements.oldestLogs.all(EXPIRY_BATCH_ROWS) as ({
      seq: number;
      at: number;
    } & LogRowSizes)[];
    let last: number | undefined;
    let count = 0;
    let freed = 0;
    for (const row of rows) {
      const stale = row.at < cutoff;
      const over = this.logUsage - freed > target;
      if (!stale && !over) break;
      last = row.seq;
      count += 1;
      freed += storedLogBytes(row, this.pageSize);
    }
    if (last === undefined) return { rows: 0, bytes: 0, more: false };
    const upTo = last;
    this.db.transaction(() => {
      this.statements.deleteLogsUpTo.run(upTo);
      this.statements.addLogBytes.run(-freed);
    })();
    this.logUsage -= freed;
    return { rows: count, bytes: freed, more: count === rows.length };
  }

  private scheduleFlush(): void {
    const pending =
      this.pendingInvocations.size + this.pendingEvents.length + this.pendingLogs.length;
    if (pending >= FLUSH_MAX_PENDING) {
      setImmediate(() => this.flush());
      return;
    }
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flush(), FLUSH_DELAY_MS);
      this.flushTimer.unref();
    }
  }
}

function migrate(db: Database.Database, migrations: Migration[]): void {
  const current = Number(db.pragma('user_version', { simple: true }));
  for (const migration of migrations) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      db.exec(migration.up);
      db.pragma(`user_version = ${migration.version}`);
    })();
  }
}

function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : undefined;
}

function optionalNumber(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : Number(value);
}

function optionalString(value: unknown): string | undefined {
  return value === null || value === undefined ? undefined : String(value);
}

/**
 * A stored spec with the defaults of fields added since it was stored (a
 * version deployed before `url` existed gets `url.auth: "none"`).
 */
function storedSpec(text: unknown): FunctionSpec {
  const raw: unknown = JSON.parse(String(text));
  const parsed = FunctionSpecSchema.safeParse(raw);
  return parsed.success ? parsed.data : (raw as FunctionSpec);
}

function toFunctionRecord(row: Row): FunctionRecord {
  return {
    name: String(row.name),
    version: Number(row.version),
    spec: storedSpec(row.spec),
    codeDir: String(row.code_dir),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    ...(typeof row.code_digest === 'string' ? { codeDigest: row.code_digest } : {}),
  };
}

function toAliasRecord(row: Row): AliasRecord {
  const canaryVersion = optionalNumber(row.canary_version);
  return {
    functionName: String(row.function_name),
    name: String(row.name),
    version: Number(row.version),
    ...(canaryVersion === undefined
      ? {}
      : { canary: { version: canaryVersion, weight: Number(row.canary_weight ?? 0) } }),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** The upsert's parameters, in column order. */
function invocationParams(record: InvocationRecord): unknown[] {
  return [
    record.id,
    record.functionName,
    record.version,
    record.mode,
    record.status,
    record.startPath ?? null,
    record.instanceId ?? null,
    record.error?.code ?? null,
    record.error?.message ?? null,
    record.error?.details === undefined ? null : JSON.stringify(record.error.details),
    record.result === undefined ? null : JSON.stringify(record.result),
    record.receivedAt,
    record.dispatchedAt ?? null,
    record.startedAt ?? null,
    record.finishedAt ?? null,
    record.queuedMs ?? null,
    record.initMs ?? null,
    record.executionMs ?? null,
    record.totalMs ?? null,
    record.cpuMs ?? null,
    record.peakMemoryBytes ?? null,
    record.netRxBytes ?? null,
    record.netTxBytes ?? null,
    record.logsDropped?.lines ?? null,
    record.logsDropped?.bytes ?? null,
    record.http?.method ?? null,
    record.http?.path ?? null,
    record.http?.status ?? null,
    record.microtasks === undefined ? null : JSON.stringify(record.microtasks),
    record.microtasksDropped ?? null,
  ];
}

function toInvocationRecord(row: Row): InvocationRecord {
  const errorCode = optionalString(row.error_code);
  return {
    id: String(row.id),
    functionName: String(row.function_name),
    version: Number(row.version),
    mode: row.mode === 'async' ? 'async' : 'sync',
    status: String(row.status) as InvocationRecord['status'],
    startPath: optionalString(row.start_path) as InvocationRecord['startPath'],
    instanceId: optionalString(row.instance_id),
    error: errorCode
      ? {
          code: errorCode as ErrorCode,
          message: String(row.error_message ?? ''),
          details: parseJson(row.error_details),
        }
      : undefined,
    result: parseJson(row.result),
    receivedAt: Number(row.received_at),
    dispatchedAt: optionalNumber(row.dispatched_at),
    startedAt: optionalNumber(row.started_at),
    finishedAt: optionalNumber(row.finished_at),
    queuedMs: optionalNumber(row.queued_ms),
    initMs: optionalNumber(row.init_ms),
    executionMs: optionalNumber(row.execution_ms),
    totalMs: optionalNumber(row.total_ms),
    cpuMs: optionalNumber(row.cpu_ms),
    peakMemoryBytes: optionalNumber(row.peak_memory_bytes),
    netRxBytes: optionalNumber(row.net_rx_bytes),
    netTxBytes: optionalNumber(row.net_tx_bytes),
    logsDropped:
      row.logs_dropped_lines === null || row.logs_dropped_lines === undefined
        ? undefined
        : { lines: Number(row.logs_dropped_lines), bytes: Number(row.logs_dropped_bytes ?? 0) },
    http:
      row.http_method === null || row.http_method === undefined
        ? undefined
        : {
            method: String(row.http_method),
            path: String(row.http_path ?? ''),
            status: optionalNumber(row.http_status),
          },
    microtasks: parseJson(row.microtasks) as InvocationRecord['microtasks'],
    microtasksDropped: optionalNumber(row.microtasks_dropped),
  };
}
