import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../helpers/tmp.ts';
import { PetriError } from '../../src/errors.ts';
import {
  loadTrace,
  parseWindowStart,
  preprocess,
  readTraceWindow,
} from '../../src/workload/index.ts';

const MINUTES = Array.from({ length: 1440 }, (_, i) => i + 1).join(',');
const DURATION_HEADER =
  'HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100';
const MEMORY_HEADER =
  'HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100';

/** A day of counts with `values` placed from minute index `at` (0-based). */
function day(values: number[], at: number): string {
  const counts = new Array<number>(1440).fill(0);
  values.forEach((v, i) => (counts[at + i] = v));
  return counts.join(',');
}

function writeTraceDir(files: {
  invocations?: string[];
  durations?: string[];
  memory?: string[];
}): string {
  const dir = tempDir('petri-trace-');
  writeFileSync(
    path.join(dir, 'invocations_per_function_md.anon.d01.csv'),
    [`HashOwner,HashApp,HashFunction,Trigger,${MINUTES}`, ...(files.invocations ?? [])].join('\n') +
      '\n',
  );
  writeFileSync(
    path.join(dir, 'function_durations_percentiles.anon.d01.csv'),
    [DURATION_HEADER, ...(files.durations ?? [])].join('\n') + '\n',
  );
  writeFileSync(
    path.join(dir, 'app_memory_percentiles.anon.d01.csv'),
    [MEMORY_HEADER, ...(files.memory ?? [])].join('\n') + '\n',
  );
  return dir;
}

const goodFiles = {
  invocations: [
    `o1,a1,f1,http,${day([1, 2, 3], 60)}`, // in window 01:01:00 + 3
    `o1,a1,f2,timer,${day([4, 0, 4], 60)}`,
    `o1,a2,f3,queue,${day([7], 600)}`, // outside the window: dropped
    `o1,a3,f4,http,${day([1, 1, 1], 60)}`, // zero average duration: dropped
    `o1,a4,f5,http,${day([2], 61)}`, // no duration row: dropped
    `o1,a5,f6,http,${day([2], 62)}`, // no memory row for its app: dropped
  ],
  durations: [
    'o1,a1,f1,100,6,10,500,10,12,50,90,120,400,500',
    'o1,a1,f2,20,8,5,40,5,5,10,20,30,39,40',
    'o1,a2,f3,100,7,10,500,10,12,50,90,120,400,500',
    'o1,a3,f4,0,3,0,0,0,0,0,0,0,0,0',
    'o1,a5,f6,100,2,10,500,10,12,50,90,120,400,500',
  ],
  memory: [
    'o1,a1,100,200,100,120,150,200,250,300,350,400',
    'o1,a2,100,300,100,120,150,200,250,300,350,400',
    'o1,a3,100,300,100,120,150,200,250,300,350,400',
    'o1,a4,100,300,100,120,150,200,250,300,350,400',
  ],
};

describe('trace preprocessing (Azure 2019)', () => {
  it('slices the window, joins the files and reports each drop', async () => {
    const dir = writeTraceDir(goodFiles);
    const { trace, report } = await readTraceWindow(dir, {
      start: parseWindowStart('01:01:00'),
      minutes: 3,
    });
    assert.equal(trace.minutes, 3);
    assert.deepEqual(
      trace.functions.map((f) => [f.func, Array.from(f.counts)]),
      [
        ['f1', [1, 2, 3]],
        ['f2', [4, 0, 4]],
      ],
    );
    assert.equal(trace.functions[0].duration.average, 100);
    // App a1's 200 MB is split evenly across its two functions.
    assert.equal(trace.functions[0].memory.average, 100);
    assert.equal(trace.functions[1].memory.p100, 200);
    assert.deepEqual(report.dropped, {
      noInvocationsInWindow: 1,
      zeroAverageDuration: 1,
      noDurationRow: 1,
      noMemoryRow: 1,
      duplicateRows: 0,
    });
    assert.equal(report.functionsRead, 6);
    assert.equal(report.invocationsKept, 14);
  });

  it('writes a trace that reads back the same', async () => {
    const dir = writeTraceDir(goodFiles);
    const out = tempDir('petri-pre-');
    await preprocess(dir, out, { start: parseWindowStart('01:01:00'), minutes: 3 });
    const back = await loadTrace(out);
    assert.equal(back.minutes, 3);
    assert.deepEqual(
      back.functions.map((f) => f.memory.average),
      [100, 100],
    );
    assert.deepEqual(Array.from(back.functions[1].counts), [4, 0, 4]);
    assert.ok(
      readFileSync(path.join(out, 'preprocess-report.json'), 'utf8').includes('noMemoryRow'),
    );
  });

  it('names file, line and column of a malformed row', async () => {
    const dir = writeTraceDir({
      ...goodFiles,
      durations: [
        ...goodFiles.durations.slice(0, 2),
        'o1,a2,f3,abc,7,10,500,10,12,50,90,120,400,500',
      ],
    });
    await assert.rejects(
      readTraceWindow(dir, { start: parseWindowStart('01:01:00'), minutes: 3 }),
      (err) => {
        assert.ok(err instanceof PetriError);
        assert.equal(err.code, 'InvalidRequest');
        assert.match(
          err.message,
          /^function_durations_percentiles\.anon\.d01\.csv:4:4: column "Average"/,
        );
        return true;
      },
    );
  });

  it('reports a short row and a negative count', async () => {
    const short = writeTraceDir({ ...goodFiles, invocations: ['o1,a1,f1,http,1,2'] });
    await assert.rejects(
      loadTrace(short),
      /invocations_per_function_md\.anon\.d01\.csv:2:7: expected 1444 columns, found 6/,
    );
    const negative = writeTraceDir({
      ...goodFiles,
      invocations: [`o1,a1,f1,http,${day([-1], 0)}`],
    });
    await assert.rejects(
      loadTrace(negative),
      /d01\.csv:2:5: column "1": expected a non-negative number, found "-1"/,
    );
  });

  it('skips and counts malformed rows with --lenient', async () => {
    const dir = writeTraceDir({
      ...goodFiles,
      invocations: [...goodFiles.invocations, 'broken,row', `o1,a1,f9,http,${day([1.5], 60)}`],
    });
    const { trace, report } = await readTraceWindow(dir, {
      start: parseWindowStart('01:01:00'),
      minutes: 3,
      lenient: true,
    });
    assert.equal(trace.functions.length, 2);
    assert.equal(report.malformedRows.invocations.count, 2);
    assert.equal(report.malformedRows.invocations.examples[0].line, 8);
  });

  it('rejects a bad header even when lenient, and a bad --start', async () => {
    const dir = writeTraceDir(goodFiles);
    writeFileSync(path.join(dir, 'app_memory_percentiles.anon.d01.csv'), 'HashOwner,Wrong\n');
    await assert.rejects(
      loadTrace(dir, { lenient: true }),
      /app_memory_percentiles\.anon\.d01\.csv:1:2: expected header column "HashApp"/,
    );
    assert.throws(() => parseWindowStart('1:25:00'), /--start must be dd:hh:mm/);
  });
});

describe('trace preprocessing (Azure 2021)', () => {
  it('bins invocations by start time and computes duration percentiles', async () => {
    const dir = tempDir('petri-2021-');
    writeFileSync(
      path.join(dir, 'AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt'),
      [
        'app,func,end_timestamp,duration',
        'a,f,10.5,0.5',
        'a,f,70,1',
        'a,g,200,0.2',
        'b,h,59,2',
      ].join('\n') + '\n',
    );
    const { trace, report } = await readTraceWindow(dir, { minutes: 2, defaultMemoryMb: 300 });
    assert.equal(report.format, 'azure2021');
    const byName = new Map(trace.functions.map((f) => [f.func, f]));
    assert.deepEqual(Array.from(byName.get('f')?.counts ?? []), [1, 1]);
    assert.equal(byName.get('f')?.duration.average, 750);
    assert.equal(byName.get('h')?.memory.average, 300);
    assert.equal(byName.has('g'), false); // starts at minute 3, outside the window
  });
});
