import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startNode } from '../../src/boot/index.ts';
import { parseConfig } from '../../src/config.ts';
import { PetriError } from '../../src/errors.ts';
import { checkNodeBinary, INSTANCE_NODE_MIN_MAJOR } from '../../src/runtime/index.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir('petri-node-binary-');

/** An executable shell script standing in for a binary. */
function script(name: string, body: string, mode = 0o755): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode });
  fs.chmodSync(file, mode);
  return file;
}

/** Asserts that the check fails with InvalidRequest on the field, its message matching `pattern`. */
async function rejects(binary: string, pattern: RegExp): Promise<void> {
  await assert.rejects(checkNodeBinary(binary), (err: unknown) => {
    assert.ok(err instanceof PetriError);
    assert.equal(err.code, 'InvalidRequest');
    assert.match(err.message, /^config runtime\.nodeBinary "/);
    assert.match(err.message, pattern);
    const { issues } = err.details as { issues: { field: string; message: string }[] };
    assert.equal(issues[0].field, 'runtime.nodeBinary');
    assert.match(issues[0].message, pattern);
    return true;
  });
}

describe('config runtime.nodeBinary', () => {
  it("defaults to the daemon's own binary", () => {
    assert.equal(parseConfig({}).runtime.nodeBinary, process.execPath);
  });

  it('accepts a Node binary and reports its version', async () => {
    assert.deepEqual(await checkNodeBinary(process.execPath), {
      binary: process.execPath,
      version: process.version,
    });
  });

  it('accepts any executable that reports a recent enough Node version', async () => {
    const wrapper = script('wrapper', `exec "${process.execPath}" "$@"`);
    assert.deepEqual(await checkNodeBinary(wrapper), {
      binary: wrapper,
      version: process.version,
    });
  });

  it('rejects a relative path', async () => {
    await rejects('node', /is not an absolute path$/);
  });

  it('rejects a path that does not exist', async () => {
    await rejects(path.join(dir, 'no-such-node'), /does not exist$/);
  });

  it('rejects a directory', async () => {
    await rejects(dir, /is not a file$/);
  });

  it('rejects a file without execute permission', async () => {
    await rejects(script('not-executable', 'echo v24.0.0', 0o644), /is not executable$/);
  });

  it('rejects a binary that fails with --version', async () => {
    await rejects(script('fails', 'exit 3'), /failed to run with --version: /);
  });

  it('rejects a binary that is not Node', async () => {
    await rejects(
      script('not-node', 'echo "sh (fake) 1.0"'),
      /does not report a Node version with --version \(it printed "sh \(fake\) 1\.0"\)$/,
    );
  });

  it(`rejects a Node older than ${INSTANCE_NODE_MIN_MAJOR}`, async () => {
    await rejects(
      script('old-node', 'echo v18.20.4'),
      new RegExp(`is Node v18\\.20\\.4; instances need Node ${INSTANCE_NODE_MIN_MAJOR} or newer$`),
    );
  });

  it('stops a node from starting, before it makes its state dir', async () => {
    const stateDir = path.join(dir, 'state-never-made');
    await assert.rejects(
      startNode({ stateDir, port: 0, logLevel: 'silent', runtime: { nodeBinary: '/nonexistent' } }),
      (err: unknown) => err instanceof PetriError && err.code === 'InvalidRequest',
    );
    assert.equal(fs.existsSync(stateDir), false);
  });
});
