import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildHost, type FromInstance } from '../../src/runtime/index.ts';
import {
  ProcessDriver,
  type IsolationLayer,
  type SandboxExit,
  type SandboxSpec,
} from '../../src/sandbox/index.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-driver-'));
const hostScript = path.join(dir, 'host.mjs');
const limits = { responseBytes: 1024 * 1024, logLineBytes: 1024 };

before(async () => {
  await buildHost(hostScript);
  fs.writeFileSync(
    path.join(dir, 'bundle.mjs'),
    'export async function handler(e) { console.log("x".repeat(e.print)); return e.print; }\n',
  );
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

function spec(id: string): SandboxSpec {
  return {
    instanceId: id,
    functionName: 'f',
    version: 1,
    codeDir: dir,
    cwd: dir,
    entry: { runtime: 'node', bundle: path.join(dir, 'bundle.mjs'), exportName: 'handler' },
    env: {},
    resources: {
      memoryMb: 128,
      cpu: 1,
      initCpu: 1,
      bandwidthMbit: 600,
      burstBytes: 256 * 1024,
      pidsMax: 64,
      tmpSizeMb: 16,
    },
    network: { inbound: false, egress: false },
  };
}

/** A layer that launches something that does not exist, as a broken host tool would. */
const missingTool: IsolationLayer = {
  mechanisms: () => [],
  prepare: async () => ({ wrap: () => [path.join(dir, 'no-such-tool')], destroy: async () => {} }),
  reconcile: async () => {},
  close: async () => {},
};

describe('the process driver', () => {
  it(
    'reports an instance whose launch fails as exited, with the reason',
    { timeout: 20_000 },
    async () => {
      const driver = new ProcessDriver({ hostScript, layers: [missingTool], limits });
      const sandbox = await driver.create(spec('broken'));
      const exit = await new Promise<SandboxExit>((resolve) => sandbox.on('exit', resolve));
      assert.match(exit.stderrTail, /spawn failed: .*ENOENT/);
      await sandbox.destroy(); // returns: nothing is left to wait for
    },
  );

  it(
    'runs an instance, cuts its long lines, and reports its exit after all its output',
    { timeout: 20_000 },
    async () => {
      const driver = new ProcessDriver({ hostScript, layers: [], limits });
      const sandbox = await driver.create(spec('plain'));
      const messages: FromInstance[] = [];
      const lines: string[] = [];
      sandbox.on('message', (message) => messages.push(message));
      sandbox.on('output', (_stream, line) => lines.push(line));
      const ready = new Promise<void>((resolve) =>
        sandbox.on('message', (m) => m.type === 'ready' && resolve()),
      );
      await ready;
      const result = new Promise<void>((resolve) =>
        sandbox.on('message', (m) => m.type === 'result' && resolve()),
      );
      sandbox.send({
        type: 'invoke',
        id: 'i1',
        event: { print: 5000 },
        deadline: Date.now() + 5000,
      });
      await result;
      const exited = new Promise<SandboxExit>((resolve) => sandbox.on('exit', resolve));
      await sandbox.destroy();
      await exited;
      assert.deepEqual(messages.at(-1), { type: 'result', id: 'i1', value: 5000 });
      assert.deepEqual(lines, ['x'.repeat(1024) + '…[truncated 3976 bytes]']);
    },
  );
});
