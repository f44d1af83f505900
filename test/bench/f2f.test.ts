import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  cpuLimitsIn,
  fanIn,
  nativeStar,
  rateOver,
  sharedWindow,
  writeF2fCharts,
} from '../../src/bench/f2f/index.ts';
import { listNetns } from '../../src/net/index.ts';
import { requireRoot } from '../helpers/root.ts';

// bench net --f2f's native side: a receiver and senders on their own veth pairs, the
// namespaces under a member's CPU limits, and part (d)'s fan-in measured across them.
test('native star: CPU limits mirrored, N senders measured, nothing left behind', async (t) => {
  if (!requireRoot(t)) return;
  const star = await nativeStar(2);
  const names = [star.receiver.netns, ...star.senders.map((s) => s.netns)];
  try {
    // The members' place in the hierarchy too: a node level (weight 256 here) holding one
    // cgroup per namespace (weight 512), as Petri's /petri/<tag>/<instance>.
    const allCpus = fs.readFileSync('/sys/fs/cgroup/cpuset/cpuset.cpus', 'utf8').trim();
    const limits = {
      quotaUs: 50_000,
      periodUs: 100_000,
      shares: 512,
      cpus: '0',
      mems: '0',
      group: { quotaUs: -1, periodUs: 100_000, shares: 256, cpus: allCpus },
      cpuParent: '/',
      cpusetParent: '/',
    };
    await star.limitCpu([limits, limits, limits]);
    for (const netns of names) assert.deepEqual(await cpuLimitsIn(netns), limits);
    const sample = await fanIn(star.senders, 2, 1, star.receiver.netns);
    assert.equal(sample.perSenderMbit.length, 2);
    for (const mbit of sample.perSenderMbit) assert.ok(mbit > 10, `${mbit} Mbit/s`);
    assert.ok(
      Math.abs(sample.senderSumMbit - sample.perSenderMbit[0] - sample.perSenderMbit[1]) < 1e-6,
    );
    // Counted at the receiver's two veths over the shared window: the same order as the
    // senders' own figures (not one link only, not bytes for bits).
    assert.ok(sample.windowMs >= 300, `window ${sample.windowMs} ms`);
    const ratio = sample.aggregateMbit / sample.senderSumMbit;
    assert.ok(
      ratio > 0.5 && ratio < 2,
      `received ${sample.aggregateMbit} vs sum ${sample.senderSumMbit}`,
    );
    assert.ok(sample.startSkewMs < 1000, `start skew ${sample.startSkewMs} ms`);
  } finally {
    await star.close();
  }
  const left = new Set(await listNetns());
  for (const netns of names) assert.ok(!left.has(netns), `${netns} left behind`);
  const ours = star.receiver.netns.slice(0, -1); // the star's cgroups: petri-f2f-x<tag>/<k>
  const cgroups = ['cpu', 'cpuset'].flatMap((c) =>
    fs.readdirSync(`/sys/fs/cgroup/${c}`).filter((d) => d.startsWith(ours)),
  );
  assert.deepEqual(cgroups, []);
});

test('receiver counter: the rate over the window every sender shares, interpolated', () => {
  // Two senders: one starts 400 ms late; the window is from its start + 1.2 s to the first end - 0.1 s.
  const runs = [
    { startedAt: 10_000, endedAt: 14_000 },
    { startedAt: 10_400, endedAt: 14_500 },
  ];
  assert.deepEqual(sharedWindow(runs), { from: 11_600, to: 13_900 });
  assert.equal(sharedWindow([{ startedAt: 10_000, endedAt: 11_500 }]), undefined, 'too short');
  // 10 000 bytes a ms = 80 Mbit/s, sampled at uneven instants.
  const samples = [10_000, 10_130, 11_550, 11_700, 13_850, 13_990, 15_000].map((at) => ({
    at,
    bytes: (at - 10_000) * 10_000,
  }));
  const rate = rateOver(samples, { from: 11_600, to: 13_900 });
  assert.ok(rate !== undefined && Math.abs(rate - 80) < 1e-9, String(rate));
  assert.equal(
    rateOver(samples, { from: 9_000, to: 12_000 }),
    undefined,
    'before the first sample',
  );
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
