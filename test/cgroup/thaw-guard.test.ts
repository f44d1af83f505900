import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThawGuard } from '../../src/cgroup/index.ts';
import { fakeRoot, files, read } from './fake.ts';

test('the thaw guard waits while its pipe is open, then thaws every instance under its folder', async () => {
  const root = await fakeRoot();
  const dir = path.join(root, 'petri', 'tag');
  // A name with a space and a quote: paths reach the script as arguments, never as its text.
  for (const name of ['i-1', "i 2'x"])
    await files(path.join(dir, name), { 'freezer.state': 'FROZEN\n' });
  const guard = ThawGuard.start('/bin/sh', { dir, file: 'freezer.state', thawed: 'THAWED' });
  assert.ok(guard.pid);
  await sleep(100);
  assert.equal(await read(path.join(dir, 'i-1', 'freezer.state')), 'FROZEN\n');
  await guard.close(); // the same EOF the guard reads when the daemon dies
  assert.equal(await read(path.join(dir, 'i-1', 'freezer.state')), 'THAWED\n');
  assert.equal(await read(path.join(dir, "i 2'x", 'freezer.state')), 'THAWED\n');
  await fs.rm(root, { recursive: true, force: true });
});
