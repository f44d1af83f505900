/**
 * The workload verbs through the real `petri` program, in-process: synth →
 * preprocess → sample → load (against a local no-op HTTP server) → report,
 * in a temp dir, plus the failures a user meets first.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CommanderError } from 'commander';
import { registerCoreCommands, rootCommand } from '../../src/cli/program.ts';
import type { CliIo } from '../../src/cli/verb.ts';
import { registerWorkloadCommands } from '../../src/cli/workload.ts';
import { isErrorCode } from '../../src/errors.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `petri ARGS` as main.ts builds it (core and workload verbs), with output captured. */
async function petri(args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  let code = 0;
  const io: CliIo = {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    stderrIsTTY: false,
    setExitCode: (c) => (code = c),
    now: () => Date.now(),
  };
  const program = rootCommand({})
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  registerCoreCommands(program, io);
  registerWorkloadCommands(program, io);
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    code = err.exitCode;
  }
  return { code, stdout, stderr };
}

/** Asserts a failed run: exit 1 and `Error <Code>: ...` with a registered code. */
function assertFails(run: Run, message: RegExp): void {
  assert.equal(run.code, 1, `exit code; stdout: ${run.stdout}`);
  assert.equal(run.stdout, '');
  const match = /^Error (\w+): (.*)$/m.exec(run.stderr);
  assert.ok(match, `stderr: ${run.stderr}`);
  assert.ok(isErrorCode(match[1]), `unregistered code ${match[1]}`);
  assert.match(match[2], message);
}

const INVOCATIONS = 'invocations_per_function_md.anon.d01.csv';
const DURATIONS = 'function_durations_percentiles.anon.d01.csv';
const MEMORY = 'app_memory_percentiles.anon.d01.csv';

async function csvRows(file: string): Promise<string[][]> {
  const text = await readFile(file, 'utf8');
  return text
    .trimEnd()
    .split('\n')
    .map((line) => line.split(','));
}

/** Per-function minute counts of a trace dir's invocations file (header dropped). */
async function counts(dir: string): Promise<{ fn: string; counts: number[] }[]> {
  const [header, ...rows] = await csvRows(join(dir, INVOCATIONS));
  assert.deepEqual(header.slice(0, 4), ['HashOwner', 'HashApp', 'HashFunction', 'Trigger']);
  return rows.map((row) => ({ fn: row[2], counts: row.slice(4).map(Number) }));
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

function parseJson<T>(run: Run): T {
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout) as T;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

async function assertPng(file: string): Promise<void> {
  const bytes = await readFile(file);
  assert.ok(bytes.subarray(0, 8).equals(PNG_SIGNATURE), `${file} is not a PNG`);
  // IHDR width: charts are rendered 1200 px wide.
  assert.equal(bytes.readUInt32BE(16), 1200);
}

describe('petri workload verbs', () => {
  let dir: string;
  let server: http.Server;
  let port = 0;
  let hits = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'petri-cli-workload-'));
    // A no-op target: every invocation answers 200 at once.
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        hits += 1;
        res.setHeader('content-type', 'application/json');
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  describe('a small pipeline: synth → preprocess → sample → load → report', () => {
    it('trace synth writes an Azure 2019 trace and summarises it as JSON', async () => {
      const out = join(dir, 'synth');
      const summary = parseJson<{
        functions: number;
        minutes: number;
        invocations: number;
        out: string;
      }>(
        await petri([
          '--json',
          'trace',
          'synth',
          '--functions',
          '200',
          '--minutes',
          '5',
          '--seed',
          '1',
          '--out',
          out,
        ]),
      );
      assert.equal(summary.functions, 200);
      assert.equal(summary.minutes, 5);
      assert.equal(summary.out, out);
      const rows = await counts(out);
      assert.equal(rows.length, 200);
      for (const row of rows) assert.equal(row.counts.length, 5);
      assert.equal(sum(rows.map((r) => sum(r.counts))), summary.invocations);
      for (const file of [DURATIONS, MEMORY]) assert.ok(existsSync(join(out, file)), file);
    });

    it('trace preprocess slices a window and reports what it kept', async () => {
      const out = join(dir, 'pre');
      const args = ['trace', 'preprocess', '--trace', join(dir, 'synth')];
      const window = ['--start', '01:00:00', '--minutes', '3'];
      const report = parseJson<{
        format: string;
        window: { start: string; minutes: number };
        functionsRead: number;
        functionsKept: number;
        invocationsKept: number;
        dropped: Record<string, number>;
      }>(await petri(['--json', ...args, ...window, '--out', out]));
      assert.equal(report.format, 'azure2019');
      assert.deepEqual(report.window, { start: '01:00:00', minutes: 3 });
      assert.equal(report.functionsRead, 200);
      // Only functions silent in the first 3 minutes are dropped.
      const whole = await counts(join(dir, 'synth'));
      const active = whole.filter((r) => sum(r.counts.slice(0, 3)) > 0);
      assert.equal(report.functionsKept, active.length);
      assert.equal(report.dropped.noInvocationsInWindow, 200 - active.length);
      const rows = await counts(out);
      assert.equal(rows.length, report.functionsKept);
      for (const row of rows) assert.equal(row.counts.length, 3);
      assert.equal(sum(rows.map((r) => sum(r.counts))), report.invocationsKept);
      const written = JSON.parse(
        await readFile(join(out, 'preprocess-report.json'), 'utf8'),
      ) as unknown;
      assert.deepEqual(written, report);

      // Without --json: a table for people, same files.
      const text = await petri([...args, ...window, '--out', join(dir, 'pre-text')]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /dropped: no invocations in window/);
      assert.match(text.stdout, new RegExp(`${report.invocationsKept} invocations kept`));
    });

    it('trace sample writes nested samples/<N>/ traces and the WD tables', async () => {
      const out = join(dir, 'sample');
      const result = parseJson<{
        seconds: number;
        sizes: {
          size: number;
          invocations: number;
          invocationWd: number;
          resourceWd: number;
          score: number;
          random?: { score: number };
        }[];
      }>(
        await petri([
          '--json',
          'trace',
          'sample',
          '--trace',
          join(dir, 'pre'),
          '--min',
          '10',
          '--max',
          '30',
          '--step',
          '10',
          '--trials',
          '4',
          '--seed',
          '1',
          '--baseline',
          'random',
          '--no-png',
          '--out',
          out,
        ]),
      );
      assert.deepEqual(
        result.sizes.map((s) => s.size),
        [10, 20, 30],
      );
      for (const s of result.sizes) {
        assert.ok(s.score > 0 && Number.isFinite(s.score), JSON.stringify(s));
        assert.ok(s.random && Number.isFinite(s.random.score), 'random baseline scored');
      }

      assert.deepEqual((await readdir(join(out, 'samples'))).sort(), ['10', '20', '30']);
      const members: Set<string>[] = [];
      for (const s of result.sizes) {
        const sampleDir = join(out, 'samples', String(s.size));
        assert.deepEqual(
          (await readdir(sampleDir)).sort(),
          [MEMORY, DURATIONS, INVOCATIONS].sort(),
        );
        const rows = await counts(sampleDir);
        assert.equal(rows.length, s.size);
        assert.equal(sum(rows.map((r) => sum(r.counts))), s.invocations);
        members.push(new Set(rows.map((r) => r.fn)));
      }
      // Nested: each summary's functions are all in the next larger one.
      for (let k = 0; k + 1 < members.length; k++)
        for (const fn of members[k]) assert.ok(members[k + 1].has(fn), `${fn} not nested`);

      const [header, ...csv] = await csvRows(join(out, 'wd.csv'));
      assert.deepEqual(header, [
        'size',
        'invocations',
        'loadShare',
        'invocationWd',
        'resourceWd',
        'score',
        'randomInvocationWd',
        'randomResourceWd',
        'randomScore',
      ]);
      assert.deepEqual(
        csv.map((row) => [Number(row[0]), Number(row[5])]),
        result.sizes.map((s) => [s.size, s.score]),
      );
      const wd = JSON.parse(await readFile(join(out, 'wd.json'), 'utf8')) as {
        seed: number;
        trials: number;
        scale: string;
        scaleLabel: string;
        method: string;
        sizes: { size: number }[];
      };
      // The paper's metric and method by default, and labelled as such.
      assert.deepEqual([wd.seed, wd.trials, wd.scale, wd.method], [1, 4, 'linear', 'invitro']);
      assert.match(wd.scaleLabel, /the paper's metric/);
      assert.equal(wd.sizes.length, 3);
      assert.match(await readFile(join(out, 'wd.svg'), 'utf8'), /<svg/);
      assert.ok(!existsSync(join(out, 'wd.png')), '--no-png writes no PNG');
    });

    it('load --target http replays a sample against a local server and records every invocation', async () => {
      const trace = join(dir, 'sample', 'samples', '10');
      const out = join(dir, 'run');
      hits = 0;
      const analysis = parseJson<{
        invocations: number;
        completed: number;
        failed: number;
        failureRate: number;
        slowdown: number;
        slowdownPerFunction: { function: string; slowdown: number }[];
        latencyMs: { p50: number; p99: number; max: number };
        latenessMs: { p99: number };
        offeredRate: number;
        errors: Record<string, number>;
      }>(
        await petri([
          '--json',
          'load',
          '--trace',
          trace,
          '--target',
          'http',
          '--url-template',
          `http://127.0.0.1:${port}/fn/{function}?ms={durationMs}`,
          '--minutes',
          '1',
          '--warmup',
          '1',
          '--minute-ms',
          '300',
          '--iat',
          'equidistant',
          '--seed',
          '1',
          '--out',
          out,
        ]),
      );
      // Warm-up replays the trace's first minute; the measured minute is the trace's second.
      const perFunction = await counts(trace);
      const warmup = sum(perFunction.map((r) => r.counts[0]));
      const measured = sum(perFunction.map((r) => r.counts[1]));
      assert.ok(warmup > 0 && measured > 0, 'the sample has invocations in minutes 1 and 2');
      assert.equal(analysis.invocations, measured);
      assert.equal(analysis.completed, measured);
      assert.equal(analysis.failed, 0, JSON.stringify(analysis.errors));
      assert.ok(Number.isFinite(analysis.slowdown) && analysis.slowdown > 0);
      assert.ok(analysis.latencyMs.p50 <= analysis.latencyMs.p99);
      assert.ok(analysis.slowdownPerFunction.length > 0);
      assert.equal(hits, warmup + measured);

      const run = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')) as {
        scheduled: number;
        minutes: number;
        warmupMinutes: number;
        minuteMs: number;
        functions: number;
      };
      assert.deepEqual(
        [run.scheduled, run.minutes, run.warmupMinutes, run.minuteMs, run.functions],
        [warmup + measured, 1, 1, 300, 10],
      );
      const [header, ...rows] = await csvRows(join(out, 'invocations.csv'));
      assert.equal(header[0], 'invocation');
      assert.equal(rows.length, run.scheduled);
      const col = (name: string): number => header.indexOf(name);
      assert.equal(rows.filter((r) => r[col('warmup')] === '1').length, warmup);
      assert.ok(rows.every((r) => r[col('outcome')] === 'ok' && r[col('status')] === '200'));
      assert.ok(existsSync(join(out, 'results.db')));
      assert.match(await readFile(join(out, 'report.html'), 'utf8'), /<svg/);
    });

    it('report --no-png rewrites report.html with inline SVG and no PNG', async () => {
      const out = join(dir, 'run');
      await rm(join(out, 'report.html'));
      const run = await petri(['report', out, '--no-png']);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /slowdown/i);
      assert.match(run.stdout, /wrote .*report\.html\n$/);
      assert.doesNotMatch(run.stdout, /\.png/);
      const html = await readFile(join(out, 'report.html'), 'utf8');
      assert.equal(html.match(/<svg/g)?.length, 2);
      assert.deepEqual(
        (await readdir(out)).filter((f) => f.endsWith('.png')),
        [],
      );
    });

    it('report writes each chart as PNG next to the HTML, and --json the analysis', async () => {
      const out = join(dir, 'run');
      const analysis = parseJson<{ invocations: number; failed: number; slowdown: number }>(
        await petri(['--json', 'report', out]),
      );
      const [header, ...rows] = await csvRows(join(out, 'invocations.csv'));
      const warmupColumn = header.indexOf('warmup');
      assert.equal(analysis.invocations, rows.filter((r) => r[warmupColumn] === '0').length);
      assert.equal(analysis.failed, 0);
      assert.ok(Number.isFinite(analysis.slowdown));
      assert.deepEqual((await readdir(out)).filter((f) => f.endsWith('.png')).sort(), [
        'latency-ecdf.png',
        'slowdown-per-function.png',
      ]);
      await assertPng(join(out, 'latency-ecdf.png'));
      await assertPng(join(out, 'slowdown-per-function.png'));
      assert.match(await readFile(join(out, 'report.html'), 'utf8'), /<svg/);
    });
  });

  describe('bad input exits 1 with a registered error code', () => {
    it('a trace dir that does not exist', async () => {
      const missing = join(dir, 'no-such-trace');
      assertFails(
        await petri(['trace', 'sample', '--trace', missing, '--out', join(dir, 'x')]),
        /trace path .*no-such-trace does not exist/,
      );
      assertFails(
        await petri(['trace', 'preprocess', '--trace', missing, '--out', join(dir, 'x')]),
        /does not exist/,
      );
    });

    it('a malformed trace file, named by file, line and column', async () => {
      const bad = join(dir, 'bad-trace');
      await mkdir(bad);
      const synth = join(dir, 'synth');
      for (const file of [INVOCATIONS, MEMORY])
        await writeFile(join(bad, file), await readFile(join(synth, file)));
      const [header, first, ...rest] = (await readFile(join(synth, DURATIONS), 'utf8')).split('\n');
      const fields = first.split(',');
      fields[3] = 'abc'; // Average
      await writeFile(join(bad, DURATIONS), [header, fields.join(','), ...rest].join('\n'));
      assertFails(
        await petri([
          'trace',
          'preprocess',
          '--trace',
          bad,
          '--minutes',
          '5',
          '--out',
          join(dir, 'bad-out'),
        ]),
        /^function_durations_percentiles\.anon\.d01\.csv:2:4: column "Average"/,
      );
      assert.ok(!existsSync(join(dir, 'bad-out')), 'nothing written');
    });

    it('sweep --policies naming an unknown policy, one twice, or a non-Petri target', async () => {
      const sweep = (...extra: string[]) =>
        petri(['sweep', '--samples', join(dir, 'x'), '--out', join(dir, 'x'), ...extra]);
      assertFails(
        await sweep('--policies', 'on-demand,hpa'),
        /^--policies: .*on-demand, concurrency or rps/,
      );
      assertFails(await sweep('--policies', 'rps,rps'), /^--policies: lists a policy twice/);
      assertFails(
        await sweep(
          '--policies',
          'rps',
          '--target',
          'http',
          '--url-template',
          'http://127.0.0.1:1/{fn}',
        ),
        /--policies needs --target petri/,
      );
    });

    it('report on a directory that is not a load result', async () => {
      assertFails(await petri(['report', join(dir, 'synth')]), /is not a load result/);
    });

    it('an invalid option value or a missing --url-template', async () => {
      assertFails(
        await petri(['trace', 'synth', '--functions', '0', '--out', join(dir, 'x')]),
        /^--functions: /,
      );
      assertFails(
        await petri([
          'load',
          '--trace',
          join(dir, 'sample', 'samples', '10'),
          '--target',
          'http',
          '--out',
          join(dir, 'x'),
        ]),
        /--url-template/,
      );
      assert.ok(!existsSync(join(dir, 'x')));
    });

    it('under --json, the error as JSON on stdout', async () => {
      const run = await petri(['--json', 'report', join(dir, 'synth')]);
      assert.equal(run.code, 1);
      assert.equal(run.stderr, '');
      const { error } = JSON.parse(run.stdout) as { error: { code: string; message: string } };
      assert.ok(isErrorCode(error.code), `unregistered code ${error.code}`);
      assert.match(error.message, /is not a load result/);
    });
  });
});
