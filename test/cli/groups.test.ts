import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { GroupView } from '../../src/cli/client.ts';
import { runCli } from '../../src/cli/program.ts';
import { NOW, startFakeNode, type FakeNode } from './fake-node.ts';

let node: FakeNode;

const group: GroupView = {
  name: 'kv',
  function: 'etcd',
  version: 2,
  size: 3,
  barrier: 3,
  memoryMb: 256,
  createdAt: NOW - 5000,
  expiresAt: NOW + 3_600_000,
  coordinator: 'http://10.213.0.1:7946',
  members: [0, 1, 2].map((rank) => ({
    rank,
    state: 'running',
    instanceId: `etcd-2-${rank}`,
    address: `10.213.0.${rank + 2}`,
  })),
};

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--url', node.url, ...args], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    now: () => NOW,
  });
  return { code, stdout, stderr };
}

before(async () => {
  node = await startFakeNode();
});
after(() => node.close());
beforeEach(() => {
  node.requests.length = 0;
  node.routes.clear();
});

describe('petri group', () => {
  it('run sends function, size, barrier and name, and lists members by rank', async () => {
    node.routes.set('POST /v1/groups', () => ({ status: 201, body: group }));
    const run = await cli([
      'group',
      'run',
      'etcd',
      '--size',
      '3',
      '--barrier',
      '3',
      '--name',
      'kv',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(node.requests[0].body, { function: 'etcd', size: 3, barrier: 3, name: 'kv' });
    assert.match(run.stdout, /RANK\s+STATE\s+ADDRESS/);
    assert.match(run.stdout, /2\s+running\s+10\.213\.0\.4/);
  });

  it('ls, get and rm speak the group routes; --json prints the body', async () => {
    node.routes.set('GET /v1/groups', () => ({ body: { groups: [group] } }));
    node.routes.set('GET /v1/groups/kv', () => ({ body: group }));
    node.routes.set('DELETE /v1/groups/kv', () => ({ body: { name: 'kv', deleted: true } }));
    assert.match((await cli(['group', 'ls'])).stdout, /kv\s+etcd\s+3\s+3\s+3/);
    const json = await cli(['--json', 'group', 'get', 'kv']);
    assert.deepEqual(JSON.parse(json.stdout), group);
    assert.match((await cli(['group', 'rm', 'kv'])).stdout, /removed group kv/);
  });

  it('watch prints the members, then each join and leave, until the node ends the stream', async () => {
    const members = [{ rank: 0, address: '10.213.0.2' }];
    const lines = [
      { type: 'members', group: 'kv', size: 1, members },
      {
        type: 'join',
        group: 'kv',
        rank: 1,
        address: '10.213.0.3',
        members: [...members, { rank: 1, address: '10.213.0.3' }],
        at: NOW - 2,
      },
      { type: 'leave', group: 'kv', rank: 1, address: '10.213.0.3', members, at: NOW },
    ];
    const raw = lines.map((l) => JSON.stringify(l) + '\n').join('\n');
    node.routes.set('GET /v1/groups/kv/events', () => ({
      headers: { 'content-type': 'application/x-ndjson' },
      raw,
    }));
    const run = await cli(['group', 'watch', 'kv']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.stdout.trim().split('\n'), [
      'members of kv: 0=10.213.0.2',
      'join rank 1 10.213.0.3 (2 ms ago); members: 0=10.213.0.2 1=10.213.0.3',
      'leave rank 1 10.213.0.3 (0 ms ago); members: 0=10.213.0.2',
    ]);
    const json = await cli(['--json', 'group', 'watch', 'kv']);
    assert.deepEqual(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown),
      lines,
    );
    const missing = await cli(['group', 'watch', 'nope']);
    assert.equal(missing.code, 1);
  });

  it('scale posts the new size; a node error exits 1 with its code', async () => {
    node.routes.set('POST /v1/groups/kv/scale', () => ({
      status: 503,
      body: { error: { code: 'CapacityExceeded', message: 'does not fit' } },
    }));
    const run = await cli(['group', 'scale', 'kv', '--size', '9']);
    assert.equal(run.code, 1);
    assert.deepEqual(node.requests[0].body, { size: 9 });
    assert.match(run.stderr, /CapacityExceeded/);
  });
});
