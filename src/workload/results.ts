import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { PetriError } from '../errors.ts';
import { START_PATHS, type StartPath } from './targets.ts';

/** What a load run was: written to run.json next to the results. */
export const RunMetaSchema = z.object({
  label: z.string(),
  target: z.string(),
  trace: z.string(),
  functions: z.number(),
  functionNames: z.array(z.string()),
  minutes: z.number(),
  warmupMinutes: z.number(),
  minuteMs: z.number(),
  iat: z.string(),
  seed: z.number(),
  startedAt: z.string(),
  wallSeconds: z.number(),
  scheduled: z.number(),
  /** Scheduled invocations of the measured (non-warm-up) part, per second of trace time. */
  offeredRate: z.number(),
  /**
   * The node under test's CPU utilisation, 0..1 of its cores: its daemon and
   * instance cgroups, from the node (null where the target does not tell).
   */
  nodeCpuUtilisation: z.number().nullable(),
  itersPerMs: z.number().nullable(),
  cores: z.number(),
  /** The target's connection limit; requests beyond it waited in the load client. */
  connections: z.number().nullable().default(null),
  /** Requests that waited for a free connection (their wait is in their lateness). */
  delayedByConnections: z.number().default(0),
  maxQueuedForConnection: z.number().default(0),
  /** When the run stopped waiting for responses (ms after the start): a lost one's time to failure. */
  drainEndMs: z.number().nullable().default(null),
  /** The dispatcher's final estimate of how late its timers fire. */
  timerLatenessMs: z.number().nullable().default(null),
  /** The load client's own CPU while dispatching, in cores. */
  clientCpuCores: z.number().nullable().default(null),
  /** p99 of when the dispatcher handed requests over, before any wait for a connection. */
  dispatchLatenessP99Ms: z.number().nullable().default(null),
  /** Host-wide CPU utilisation from /proc/stat (load client included), 0..1, for context. */
  hostCpuUtilisation: z.number().nullable().default(null),
  /** The keep-alive policy the functions were deployed with (null: the node's default). */
  keepAlivePolicy: z.string().nullable().default(null),
  /**
   * Memory of the node's idle instances × the time they idled over the
   * measured window (after warm-up), GB·s, from the node's own count (null
   * where the target does not tell).
   */
  idleMemoryGbS: z.number().nullable().default(null),
  /** CPU-seconds the node used over the run (its cgroups; null without them). */
  nodeCpuSeconds: z.number().nullable().default(null),
});
export type RunMeta = z.infer<typeof RunMetaSchema>;

/** Every invocation of a run, as columns (index i is invocation i, in schedule order). */
export interface RunData {
  meta: RunMeta;
  fn: Int32Array;
  warmup: Uint8Array;
  scheduledMs: Float64Array;
  /** NaN if never sent (an aborted run). */
  sentMs: Float64Array;
  /** NaN if no response came. */
  doneMs: Float64Array;
  requestedDurationMs: Float64Array;
  actualDurationMs: Float64Array;
  requestedMemoryMb: Float64Array;
  /** Index into START_PATHS. */
  start: Uint8Array;
  /** HTTP status; 0 for no response. */
  status: Int16Array;
  errorCode: string[];
}

export function emptyRunData(meta: RunMeta, n: number): RunData {
  return {
    meta,
    fn: new Int32Array(n),
    warmup: new Uint8Array(n),
    scheduledMs: new Float64Array(n),
    sentMs: new Float64Array(n).fill(NaN),
    doneMs: new Float64Array(n).fill(NaN),
    requestedDurationMs: new Float64Array(n),
    actualDurationMs: new Float64Array(n).fill(NaN),
    requestedMemoryMb: new Float64Array(n),
    start: new Uint8Array(n),
    status: new Int16Array(n),
    errorCode: new Array<string>(n).fill(''),
  };
}

export function outcomeOf(data: RunData, i: number): 'ok' | 'error' | 'no-response' {
  if (data.status[i] === 0) return 'no-response';
  return data.status[i] < 400 && data.errorCode[i] === '' ? 'ok' : 'error';
}

const CSV_HEADER = [
  'invocation',
  'function',
  'warmup',
  'scheduled_ms',
  'sent_ms',
  'done_ms',
  'lateness_ms',
  'response_ms',
  'send_latency_ms',
  'requested_duration_ms',
  'actual_duration_ms',
  'requested_memory_mb',
  'start',
  'outcome',
  'status',
  'error_code',
] as const;

/** Writes run.json, invocations.csv and results.db (experiments, runs, run_invocations) into `dir`. */
export async function writeRun(dir: string, data: RunData, experiment = 'load'): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'run.json'), JSON.stringify(data.meta, null, 2) + '\n');
  await writeFile(path.join(dir, 'invocations.csv'), toCsv(data));
  writeDatabase(path.join(dir, 'results.db'), data, experiment);
}

function fixed(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : '';
}

function toCsv(data: RunData): string {
  const lines = [CSV_HEADER.join(',')];
  for (let i = 0; i < data.fn.length; i++) {
    lines.push(
      [
        i,
        data.meta.functionNames[data.fn[i]],
        data.warmup[i],
        fixed(data.scheduledMs[i]),
        fixed(data.sentMs[i]),
        fixed(data.doneMs[i]),
        fixed(data.sentMs[i] - data.scheduledMs[i]),
        fixed(data.doneMs[i] - data.scheduledMs[i]),
        fixed(data.doneMs[i] - data.sentMs[i]),
        fixed(data.requestedDurationMs[i]),
        fixed(data.actualDurationMs[i]),
        fixed(data.requestedMemoryMb[i]),
        START_PATHS[data.start[i]],
        outcomeOf(data, i),
        data.status[i],
        data.errorCode[i],
      ].join(','),
    );
  }
  return lines.join('\n') + '\n';
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    label TEXT NOT NULL,
    started_at TEXT NOT NULL,
    target TEXT NOT NULL,
    trace TEXT NOT NULL,
    meta TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS run_invocations (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    function TEXT NOT NULL,
    warmup INTEGER NOT NULL,
    scheduled_ms REAL NOT NULL,
    sent_ms REAL,
    done_ms REAL,
    requested_duration_ms REAL NOT NULL,
    actual_duration_ms REAL,
    requested_memory_mb REAL NOT NULL,
    start_path TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
  );
`;

function writeDatabase(file: string, data: RunData, experiment: string): void {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.exec(SCHEMA);
    db.prepare('INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)').run(
      experiment,
      new Date().toISOString(),
    );
    const { id: experimentId } = db
      .prepare('SELECT id FROM experiments WHERE name = ?')
      .get(experiment) as { id: number };
    const insertRun = db.prepare(
      'INSERT INTO runs (experiment_id, label, started_at, target, trace, meta) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const insert = db.prepare(
      'INSERT INTO run_invocations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const nullable = (v: number): number | null => (Number.isFinite(v) ? v : null);
    db.transaction(() => {
      const { meta } = data;
      const runId = Number(
        insertRun.run(
          experimentId,
          meta.label,
          meta.startedAt,
          meta.target,
          meta.trace,
          JSON.stringify(meta),
        ).lastInsertRowid,
      );
      for (let i = 0; i < data.fn.length; i++)
        insert.run(
          runId,
          i,
          meta.functionNames[data.fn[i]],
          data.warmup[i],
          data.scheduledMs[i],
          nullable(data.sentMs[i]),
          nullable(data.doneMs[i]),
          data.requestedDurationMs[i],
          nullable(data.actualDurationMs[i]),
          data.requestedMemoryMb[i],
          START_PATHS[data.start[i]],
          outcomeOf(data, i),
          data.status[i],
          data.errorCode[i],
        );
    })();
  } finally {
    db.close();
  }
}

/** Reads a run directory written by `writeRun` (run.json + invocations.csv). */
export async function readRun(dir: string): Promise<RunData> {
  const metaText = await readFile(path.join(dir, 'run.json'), 'utf8').catch(() => {
    throw new PetriError('InvalidRequest', `${dir} is not a load result (no run.json)`);
  });
  const parsed = RunMetaSchema.safeParse(JSON.parse(metaText));
  if (!parsed.success)
    throw new PetriError('InvalidRequest', `${dir}/run.json: ${parsed.error.issues[0]?.message}`);
  const meta = parsed.data;
  const lines = (await readFile(path.join(dir, 'invocations.csv'), 'utf8')).trimEnd().split('\n');
  const header = lines[0].split(',');
  if (header.join(',') !== CSV_HEADER.join(','))
    throw new PetriError('InvalidRequest', `${dir}/invocations.csv: unexpected header`);
  const index = new Map(meta.functionNames.map((name, i) => [name, i]));
  const data = emptyRunData(meta, lines.length - 1);
  const num = (text: string): number => (text === '' ? NaN : Number(text));
  for (let row = 1; row < lines.length; row++) {
    const f = lines[row].split(',');
    const i = row - 1;
    data.fn[i] = index.get(f[1]) ?? -1;
    data.warmup[i] = Number(f[2]);
    data.scheduledMs[i] = num(f[3]);
    data.sentMs[i] = num(f[4]);
    data.doneMs[i] = num(f[5]);
    data.requestedDurationMs[i] = num(f[9]);
    data.actualDurationMs[i] = num(f[10]);
    data.requestedMemoryMb[i] = num(f[11]);
    data.start[i] = Math.max(0, START_PATHS.indexOf(f[12] as StartPath));
    data.status[i] = Number(f[14]);
    data.errorCode[i] = f[15] ?? '';
  }
  return data;
}
