import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseConfig } from '../src/config.ts';
import { PetriError } from '../src/errors.ts';

const run = promisify(execFile);
const MAIN = path.resolve(import.meta.dirname, '../src/cli/main.ts');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-config-'));

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** `petri serve ARGS` as a child process; resolves with its exit code and output. */
async function serve(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', MAIN, 'serve', ...args],
      { timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('node configuration', () => {
  it('rejects a sandbox driver that is not built with InvalidConfig naming the field', () => {
    assert.throws(
      () => parseConfig({ sandboxDriver: 'microvm' }),
      (err: unknown) => {
        assert.ok(err instanceof PetriError);
        assert.equal(err.code, 'InvalidConfig');
        assert.match(err.message, /sandboxDriver must be "process"/);
        assert.deepEqual(
          (err.details as { issues: { field: string }[] }).issues.map((i) => i.field),
          ['sandboxDriver'],
        );
        return true;
      },
    );
    assert.equal(parseConfig({ sandboxDriver: 'process' }).sandboxDriver, 'process');
  });

  it('names every invalid field, unknown ones included', () => {
    assert.throws(
      () => parseConfig({ port: 'x', placement: { policy: 'random' }, colour: true }),
      (err: unknown) => {
        assert.ok(err instanceof PetriError);
        const fields = (err.details as { issues: { field: string }[] }).issues.map((i) => i.field);
        assert.deepEqual(fields.sort(), ['(root)', 'placement.policy', 'port']);
        assert.match(err.message, /unknown field\(s\) colour/);
        return true;
      },
    );
  });

  it('petri serve prints a bad config as "Error InvalidConfig: …", exits 1 and starts nothing', async () => {
    const file = path.join(dir, 'config.json');
    const stateDir = path.join(dir, 'state');
    fs.writeFileSync(file, JSON.stringify({ sandboxDriver: 'microvm' }));
    const bad = await serve(['--config', file, '--state-dir', stateDir, '--port', '0']);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /^Error InvalidConfig: invalid node configuration: sandboxDriver /m);
    assert.match(bad.stderr, /^ {2}sandboxDriver: must be "process"/m);
    assert.equal(bad.stdout, '');
    assert.equal(fs.existsSync(stateDir), false, 'no state dir was made');
    const unreadable = await serve(['--config', path.join(dir, 'absent.json')]);
    assert.equal(unreadable.code, 1);
    assert.match(unreadable.stderr, /^Error InvalidConfig: cannot read config .*absent\.json/m);
  });
});

describe('prewarm config', () => {
  const issues = (input: unknown): string[] => {
    try {
      parseConfig(input);
      return [];
    } catch (err) {
      assert.ok(err instanceof PetriError);
      assert.equal(err.code, 'InvalidConfig');
      return (err.details as { issues: { field: string; message: string }[] }).issues.map(
        (i) => `${i.field}: ${i.message}`,
      );
    }
  };

  it('takes static and reactive sets, egress off by default', () => {
    const config = parseConfig({
      prewarm: [
        { runtime: 'node', memoryMb: 128, count: 2 },
        { runtime: 'node', memoryMb: 256, count: 1, reactive: { min: 0, max: 4, ttlMs: 60_000 } },
      ],
    });
    assert.deepEqual(config.prewarm[0], {
      runtime: 'node',
      memoryMb: 128,
      count: 2,
      egress: false,
    });
    assert.deepEqual(config.prewarm[1]!.reactive, { min: 0, max: 4, ttlMs: 60_000 });
    assert.deepEqual(parseConfig({}).prewarm, []);
  });

  it('rejects other runtimes, bad sizes and counts, unknown fields and duplicate sizes', () => {
    assert.match(
      issues({ prewarm: [{ runtime: 'exec', memoryMb: 128, count: 1 }] })[0]!,
      /prewarm\.0\.runtime: must be "node"/,
    );
    assert.match(
      issues({ prewarm: [{ runtime: 'node', memoryMb: 32, count: 1 }] })[0]!,
      /prewarm\.0\.memoryMb/,
    );
    assert.match(
      issues({ prewarm: [{ runtime: 'node', memoryMb: 128, count: -1 }] })[0]!,
      /prewarm\.0\.count/,
    );
    assert.match(
      issues({ prewarm: [{ runtime: 'node', memoryMb: 128, count: 1, size: 2 }] })[0]!,
      /prewarm\.0/,
    );
    assert.match(
      issues({ prewarm: [{ runtime: 'node', memoryMb: 128 }] })[0]!,
      /prewarm\.0\.count/,
    );
    const twice = { runtime: 'node', memoryMb: 128, count: 1 };
    assert.match(issues({ prewarm: [twice, twice] })[0]!, /prewarm: must not hold two entries/);
    // The same size with and without egress are two sets.
    assert.deepEqual(issues({ prewarm: [twice, { ...twice, egress: true }] }), []);
  });

  it('rejects a reactive set whose count lies outside min..max, or min above max', () => {
    const set = (count: number, reactive: object) => ({
      prewarm: [{ runtime: 'node', memoryMb: 128, count, reactive }],
    });
    assert.match(
      issues(set(5, { min: 1, max: 4, ttlMs: 1000 }))[0]!,
      /prewarm\.0\.count: must lie between/,
    );
    assert.match(
      issues(set(2, { min: 3, max: 2, ttlMs: 1000 })).join(';'),
      /reactive\.min: must not be more than max/,
    );
    assert.match(issues(set(1, { min: 0, max: 2, ttlMs: 10 }))[0]!, /reactive\.ttlMs/);
    assert.match(issues(set(1, { min: 0, max: 2 }))[0]!, /reactive\.ttlMs/);
  });
});
