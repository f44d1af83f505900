import { open, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PetriError } from '../errors.ts';
import {
  FILES,
  MINUTES_PER_DAY,
  type DurationRow,
  type InvocationRow,
  type MemoryRow,
  listDays,
  readDurations,
  readInvocations,
  readMemory,
  scaleMemory,
  writeTrace,
} from './azure2019.ts';
import { is2021Header, readAzure2021 } from './azure2021.ts';
import { type MalformedRows, emptyMalformed } from './csv.ts';
import { type Trace, type TraceFunction, functionKey, totalInvocations } from './trace.ts';

/** The start of a window, as `dd:hh:mm` (day 1-based, as in the file names). */
export interface WindowStart {
  day: number;
  hour: number;
  minute: number;
}

export function parseWindowStart(text: string): WindowStart {
  const match = /^(\d{1,2}):(\d{1,2}):(\d{1,2})$/.exec(text.trim());
  const [day, hour, minute] = match ? match.slice(1).map(Number) : [NaN, NaN, NaN];
  if (!match || day < 1 || hour > 23 || minute > 59)
    throw new PetriError('InvalidRequest', `--start must be dd:hh:mm (day ≥ 1), got "${text}"`);
  return { day, hour, minute };
}

export interface ReadOptions {
  start?: WindowStart;
  /** Minutes in the window; default: to the end of the start day. */
  minutes?: number;
  lenient?: boolean;
  /** Memory for traces that have none (Azure 2021). */
  defaultMemoryMb?: number;
}

/** What preprocessing kept and dropped, and why. */
export interface PreprocessReport {
  format: 'azure2019' | 'azure2021';
  window: { start: string; minutes: number };
  functionsRead: number;
  functionsKept: number;
  invocationsKept: number;
  dropped: {
    noInvocationsInWindow: number;
    zeroAverageDuration: number;
    noDurationRow: number;
    noMemoryRow: number;
    duplicateRows: number;
  };
  malformedRows: { invocations: MalformedRows; durations: MalformedRows; memory: MalformedRows };
  notes: string[];
}

/**
 * Reads a window of a trace directory (Azure 2019, or a 2021 per-invocation
 * file), joins its files and drops what In-Vitro drops.
 */
export async function readTraceWindow(
  dir: string,
  options: ReadOptions = {},
): Promise<{ trace: Trace; report: PreprocessReport }> {
  const file2021 = await find2021File(dir);
  if (file2021) return read2021(file2021, options);
  return read2019(dir, options);
}

/** Loads a whole (already preprocessed or synthetic) trace directory. */
export async function loadTrace(dir: string, options: { lenient?: boolean } = {}): Promise<Trace> {
  return (await readTraceWindow(dir, { lenient: options.lenient })).trace;
}

/** `petri trace preprocess`: reads a window, writes it in Azure 2019 format plus report.json. */
export async function preprocess(
  dir: string,
  out: string,
  options: ReadOptions,
): Promise<PreprocessReport> {
  const { trace, report } = await readTraceWindow(dir, options);
  await writeTrace(out, trace);
  await writeFile(path.join(out, 'preprocess-report.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}

async function read2019(
  dir: string,
  options: ReadOptions,
): Promise<{ trace: Trace; report: PreprocessReport }> {
  const days = await listDays(dir).catch((err: unknown) => {
    throw new PetriError('InvalidRequest', `cannot read trace directory ${dir}: ${String(err)}`);
  });
  if (days.invocations.length === 0)
    throw new PetriError(
      'InvalidRequest',
      `${dir} has no invocations_per_function_md.anon.dNN.csv (nor an Azure 2021 trace file)`,
    );
  const start = options.start ?? { day: days.invocations[0], hour: 0, minute: 0 };
  const offset = start.hour * 60 + start.minute;
  const lenient = options.lenient ?? false;
  const malformed = {
    invocations: emptyMalformed(),
    durations: emptyMalformed(),
    memory: emptyMalformed(),
  };
  const notes: string[] = [];

  const rows = await readWindowCounts(dir, start, offset, options.minutes, days.invocations, {
    lenient,
    malformed: malformed.invocations,
  });
  const minutes = rows.minutes;

  const durationDay = pickDay(days.durations, start.day, 'function_durations_percentiles', dir);
  const memoryDay = pickDay(days.memory, start.day, 'app_memory_percentiles', dir);
  if (durationDay !== start.day) notes.push(`durations taken from day ${durationDay}`);
  if (memoryDay !== start.day) notes.push(`memory taken from day ${memoryDay}`);
  const durations = await readDurations(path.join(dir, FILES.durations(durationDay)), {
    lenient,
    malformed: malformed.durations,
  });
  const memory = await readMemory(path.join(dir, FILES.memory(memoryDay)), {
    lenient,
    malformed: malformed.memory,
  });

  const joined = join2019(rows.byKey, durations, memory);
  const report: PreprocessReport = {
    format: 'azure2019',
    window: { start: formatStart(start), minutes },
    functionsRead: rows.byKey.size,
    functionsKept: joined.functions.length,
    invocationsKept: joined.functions.reduce((sum, fn) => sum + totalInvocations(fn), 0),
    dropped: { ...joined.dropped, duplicateRows: rows.duplicates + joined.duplicates },
    malformedRows: malformed,
    notes,
  };
  return { trace: { minutes, functions: joined.functions }, report };
}

/** Reads counts for the window, which may run past midnight into the next days' files. */
async function readWindowCounts(
  dir: string,
  start: WindowStart,
  offset: number,
  requestedMinutes: number | undefined,
  available: number[],
  csv: { lenient: boolean; malformed: MalformedRows },
): Promise<{ byKey: Map<string, InvocationRow>; minutes: number; duplicates: number }> {
  const byKey = new Map<string, InvocationRow>();
  let duplicates = 0;
  let minutes = requestedMinutes ?? MINUTES_PER_DAY - offset;
  let done = 0;
  for (let day = start.day; done < minutes; day++) {
    if (!available.includes(day))
      throw new PetriError(
        'InvalidRequest',
        `the window needs ${FILES.invocations(day)}, which is not in ${dir}`,
      );
    const from = day === start.day ? offset : 0;
    // No length asked: read to the last minute column the file has.
    const to =
      requestedMinutes === undefined
        ? Infinity
        : Math.min(MINUTES_PER_DAY, from + (minutes - done));
    const rows = await readInvocations(path.join(dir, FILES.invocations(day)), from, to, csv);
    // Files with fewer columns (sliced traces) define the window length when none was asked for.
    const width = rows[0]?.counts.length ?? (Number.isFinite(to) ? to - from : 0);
    if (requestedMinutes === undefined && day === start.day) minutes = width;
    const seenToday = new Set<string>();
    for (const row of rows) {
      const key = functionKey(row.app, row.func);
      if (seenToday.has(key)) {
        duplicates++;
        continue;
      }
      seenToday.add(key);
      let entry = byKey.get(key);
      if (!entry) {
        entry = { ...row, counts: new Uint32Array(minutes) };
        byKey.set(key, entry);
      }
      entry.counts.set(row.counts.subarray(0, minutes - done), done);
    }
    done += width;
    if (width === 0) break;
  }
  return { byKey, minutes, duplicates };
}

function join2019(
  invocations: Map<string, InvocationRow>,
  durations: DurationRow[],
  memory: MemoryRow[],
): {
  functions: TraceFunction[];
  dropped: Omit<PreprocessReport['dropped'], 'duplicateRows'>;
  duplicates: number;
} {
  let duplicates = 0;
  const durationByKey = new Map<string, DurationRow>();
  for (const row of durations) {
    const key = functionKey(row.app, row.func);
    if (durationByKey.has(key)) duplicates++;
    else durationByKey.set(key, row);
  }
  const memoryByApp = new Map<string, MemoryRow>();
  for (const row of memory) {
    if (memoryByApp.has(row.app)) duplicates++;
    else memoryByApp.set(row.app, row);
  }
  const dropped = {
    noInvocationsInWindow: 0,
    zeroAverageDuration: 0,
    noDurationRow: 0,
    noMemoryRow: 0,
  };
  const kept: { row: InvocationRow; duration: DurationRow; memory: MemoryRow }[] = [];
  for (const [key, row] of invocations) {
    const duration = durationByKey.get(key);
    const appMemory = memoryByApp.get(row.app);
    if (totalInvocations(row) === 0) dropped.noInvocationsInWindow++;
    else if (!duration) dropped.noDurationRow++;
    else if (!(duration.stats.average > 0)) dropped.zeroAverageDuration++;
    else if (!appMemory) dropped.noMemoryRow++;
    else kept.push({ row, duration, memory: appMemory });
  }
  // The app's memory is split evenly across its functions that survived the join.
  const functionsPerApp = new Map<string, number>();
  for (const { row } of kept) functionsPerApp.set(row.app, (functionsPerApp.get(row.app) ?? 0) + 1);
  const functions = kept.map(({ row, duration, memory: appMemory }) => ({
    owner: row.owner,
    app: row.app,
    func: row.func,
    trigger: row.trigger,
    counts: row.counts,
    duration: duration.stats,
    memory: scaleMemory(appMemory.stats, 1 / (functionsPerApp.get(row.app) ?? 1)),
  }));
  return { functions, dropped, duplicates };
}

async function read2021(
  file: string,
  options: ReadOptions,
): Promise<{ trace: Trace; report: PreprocessReport }> {
  const start = options.start ?? { day: 1, hour: 0, minute: 0 };
  const minutes = options.minutes ?? MINUTES_PER_DAY;
  const malformed = emptyMalformed();
  const functions = await readAzure2021(
    file,
    {
      startSec: ((start.day - 1) * MINUTES_PER_DAY + start.hour * 60 + start.minute) * 60,
      minutes,
      memoryMb: options.defaultMemoryMb ?? 256,
    },
    { lenient: options.lenient ?? false, malformed },
  );
  const kept = functions.filter((fn) => fn.duration.average > 0);
  return {
    trace: { minutes, functions: kept },
    report: {
      format: 'azure2021',
      window: { start: formatStart(start), minutes },
      functionsRead: functions.length,
      functionsKept: kept.length,
      invocationsKept: kept.reduce((sum, fn) => sum + totalInvocations(fn), 0),
      dropped: {
        noInvocationsInWindow: 0,
        zeroAverageDuration: functions.length - kept.length,
        noDurationRow: 0,
        noMemoryRow: 0,
        duplicateRows: 0,
      },
      malformedRows: {
        invocations: malformed,
        durations: emptyMalformed(),
        memory: emptyMalformed(),
      },
      notes: [
        'functions with no invocation starting in the window do not appear in a per-invocation trace',
        `the 2021 trace has no memory data: every function given ${options.defaultMemoryMb ?? 256} MB`,
      ],
    },
  };
}

/** A 2021 trace is a single file (or a directory holding one) whose header is app,func,end_timestamp,duration. */
async function find2021File(dirOrFile: string): Promise<string | undefined> {
  const info = await stat(dirOrFile).catch(() => {
    throw new PetriError('InvalidRequest', `trace path ${dirOrFile} does not exist`);
  });
  const candidates = info.isDirectory()
    ? (await readdir(dirOrFile))
        .filter((n) => /\.(csv|txt)$/.test(n) && !n.includes('.anon.d'))
        .map((n) => path.join(dirOrFile, n))
    : [dirOrFile];
  for (const file of candidates) if (is2021Header(await firstLine(file))) return file;
  if (!info.isDirectory())
    throw new PetriError(
      'InvalidRequest',
      `${dirOrFile} is not an Azure 2021 trace file nor a directory`,
    );
  return undefined;
}

async function firstLine(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(256);
    const { bytesRead } = await handle.read(buffer, 0, 256, 0);
    return buffer.subarray(0, bytesRead).toString('utf8').split(/\r?\n/)[0];
  } finally {
    await handle.close();
  }
}

function pickDay(days: number[], wanted: number, kind: string, dir: string): number {
  if (days.includes(wanted)) return wanted;
  const earlier = days.filter((d) => d <= wanted);
  const chosen = earlier.length > 0 ? earlier[earlier.length - 1] : days[0];
  if (chosen === undefined)
    throw new PetriError('InvalidRequest', `${dir} has no ${kind}.anon.dNN.csv file`);
  return chosen;
}

function formatStart(start: WindowStart): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(start.day)}:${two(start.hour)}:${two(start.minute)}`;
}
