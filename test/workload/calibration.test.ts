import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SPIN = path.resolve('src/workload/synthetic-function/spin.ts');

/** Both calibrations in a fresh process pinned to CPU 0 (the hog's CPU, when there is one). */
async function calibrateOnCpu0(): Promise<{ cpu: number; wall: number }> {
  const script = `import(${JSON.stringify(SPIN)}).then((m) => console.log(JSON.stringify({ cpu: m.calibrateSpinCpu(), wall: m.calibrateSpin() })))`;
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
      assert.ok(
        ratio > 0.75 && ratio < 1.33,
        `CPU-time calibration moved ×${ratio.toFixed(2)} under the hog`,
      );
      // Sharing the core, wall time sees about half the speed: that was the old calibration's error.
      assert.ok(busy.wall / busy.cpu < 0.8, `wall ${busy.wall} vs cpu ${busy.cpu}`);
    } finally {
      hog.kill('SIGKILL');
    }
  });
});
