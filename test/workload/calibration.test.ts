import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SPIN = path.resolve('src/workload/synthetic-function/spin.ts');

/**
 * Both calibrations in a fresh process pinned to CPU 0 (the hog's CPU, when
 * there is one); the CPU-time one the median of three, as PetriTarget takes.
 */
async function calibrateOnCpu0(): Promise<{ cpu: number; wall: number }> {
  const script = `import(${JSON.stringify(SPIN)}).then((m) => { const c = [m.calibrateSpinCpu(), m.calibrateSpinCpu(), m.calibrateSpinCpu()].sort((a, b) => a - b); console.log(JSON.stringify({ cpu: c[1], wall: m.calibrateSpin() })); })`;
  const { stdout } = await run('taskset', [
    '-c',
    '0',
    process.execPath,
    '--import',
    'tsx',
    '-e',
    script,
  ]);
  return JSON.parse(stdout) as { cpu: number; wall: number };
}

describe('calibrateSpinCpu', () => {
  it('gives the same calibration with a CPU hog on the same core, unlike wall time', async () => {
    const alone = await calibrateOnCpu0();
    const hog: ChildProcess = spawn(
      'taskset',
      ['-c', '0', process.execPath, '-e', 'process.stdout.write("go\\n"); for (;;) {}'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      // Measure only once the hog is spinning (a Node start can take seconds on a loaded machine).
      await new Promise((resolve) => hog.stdout?.once('data', resolve));
      const busy = await calibrateOnCpu0();
      const ratio = busy.cpu / alone.cpu;
      // Single calibrations differ by a few % on this VM busy or not (the host's other tenants).
      assert.ok(
        ratio > 0.9 && ratio < 1.11,
        `CPU-time calibration moved ×${ratio.toFixed(3)} under the hog`,
      );
      // Sharing the core, wall time sees about half the speed: that was the old calibration's error.
      assert.ok(busy.wall / busy.cpu < 0.8, `wall ${busy.wall} vs cpu ${busy.cpu}`);
    } finally {
      hog.kill('SIGKILL');
    }
  });
});

describe('synthetic function', () => {
  const HANDLER = path.resolve('src/workload/synthetic-function/index.ts');
  /** Runs the handler for `durationMs` in a fresh process whose calibration is `scale` × the true one. */
  async function invokeWith(scale: number, durationMs: number): Promise<number> {
    const script = `import(${JSON.stringify(SPIN)}).then(async (spin) => {
      process.env.PETRI_SYNTH_ITERS_PER_MS = String(spin.calibrateSpinCpu() * ${scale});
      const fn = await import(${JSON.stringify(HANDLER)});
      const runs = [];
      for (let i = 0; i < 5; i++) runs.push((await fn.handler({ durationMs: ${durationMs} })).durationMs);
      runs.sort((a, b) => a - b);
      console.log(JSON.stringify(runs[2]));
    })`;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '-e', script]);
    return JSON.parse(stdout) as number;
  }

  it('spends the requested CPU time even when its calibration is off by 30 %', async () => {
    for (const scale of [0.7, 1.3]) {
      const measured = await invokeWith(scale, 100);
      assert.ok(
        Math.abs(measured / 100 - 1) <= 0.05,
        `calibration ×${scale}: measured ${measured.toFixed(1)} ms of CPU for 100 ms requested`,
      );
    }
  });
});
