import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cpuLimitsIn, fanIn, nativeStar, writeF2fCharts } from '../../src/bench/f2f/index.ts';
import { listNetns } from '../../src/net/index.ts';
import { requireRoot } from '../helpers/root.ts';

// bench net --f2f's native side: a receiver and senders on their own veth pairs, the
// namespaces under a member's CPU limits, and part (d)'s fan-in measured across them.
test('native star: CPU limits mirrored, N senders measured, nothing left behind', async (t) => {
  if (!requireRoot(t)) return;
  const star = await nativeStar(2);
  const names = [star.receiver.netns, ...star.senders.map((s) => s.netns)];
  try {
    const limits = { quotaUs: 50_000, periodUs: 100_000, cpus: '0', mems: '0' };
    await star.limitCpu([limits, limits, limits]);
    for (const netns of names) assert.deepEqual(await cpuLimitsIn(netns), limits);
    const sample = await fanIn(star.senders, 2, 1);
    assert.equal(sample.perSenderMbit.length, 2);
    for (const mbit of sample.perSenderMbit) assert.ok(mbit > 10, `${mbit} Mbit/s`);
    assert.ok(
      Math.abs(sample.aggregateMbit - sample.perSenderMbit[0] - sample.perSenderMbit[1]) < 1e-6,
    );
    assert.ok(sample.startSkewMs < 1000, `start skew ${sample.startSkewMs} ms`);
  } finally {
    await star.close();
  }
  const left = new Set(await listNetns());
  for (const netns of names) assert.ok(!left.has(netns), `${netns} left behind`);
  const ours = `${star.receiver.netns.slice(0, -1)}-`; // the star's cgroups: petri-f2f-x<tag>-<k>
  const cgroups = ['cpu', 'cpuset'].flatMap((c) =>
    fs.readdirSync(`/sys/fs/cgroup/${c}`).filter((d) => d.startsWith(ours)),
  );
  assert.deepEqual(cgroups, []);
});

test('--plots writes the four charts', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-f2f-plots-'));
  try {
    const side = (name: string, scale: number) => ({
      side: name,
      forwardMbit: [900 * scale, 1000 * scale],
      reverseMbit: [800 * scale],
      rttUs: [40 * scale, 50 * scale, 60 * scale],
      ttfbMs: [0.2, 0.3],
    });
    const files = await writeF2fCharts(dir, {
      sides: [side('native', 10), side('off', 8), side('on', 0.6)],
      fan: [1, 2, 4].flatMap((n) => [
        { side: 'native', n, aggregateMbit: 9000 },
        { side: 'on', n, aggregateMbit: 340 },
      ]),
      allocationMbit: 600,
      fanAllocationMbit: 347,
    });
    assert.deepEqual(files.map((f) => path.basename(f)).sort(), [
      'f2f-rtt.png',
      'f2f-senders.png',
      'f2f-throughput.png',
      'f2f-ttfb.png',
    ]);
    for (const file of files) assert.ok(fs.statSync(file).size > 1000, file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
