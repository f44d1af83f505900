/**
 * `node` functions with CommonJS dependencies that look for files next to
 * themselves, deployed to and invoked on a real daemon (sandboxed as root):
 * a small package reading a data file through `__dirname`, and better-sqlite3,
 * whose loader finds its native addon the same way.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';

const REPO_MODULES = path.resolve(import.meta.dirname, '../../node_modules');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-deps-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-deps-code-'));
let daemon: Daemon;

async function call(method: 'PUT' | 'POST', url: string, body: unknown) {
  const response = await request(daemon.url + url, {
    method,
    body: JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  return { status: response.statusCode, body: (await response.body.json()) as unknown };
}

/** Writes files (path → text) under `dir`. */
function write(dir: string, files: Record<string, string>): string {
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

function deploy(name: string, dir: string) {
  return call('PUT', `/v1/functions/${name}`, { runtime: 'node', source: { path: dir } });
}

/** The deployed copy of a function version's code on the node. */
function deployedCode(name: string, version = 1): string {
  return path.join(stateDir, 'functions', name, `v${version}`, 'code');
}

before(async () => {
  daemon = await spawnDaemon({ stateDir });
});

after(async () => {
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
});

describe('node functions with CommonJS dependencies', () => {
  it('a dependency reads a data file next to itself through __dirname', async () => {
    const token = randomUUID();
    const dir = write(path.join(codeRoot, 'reader'), {
      'index.mjs': [
        "import readGreeting from 'cjs-dep';",
        'export async function handler() { return readGreeting(); }',
      ].join('\n'),
      'node_modules/cjs-dep/package.json': '{"name": "cjs-dep", "main": "lib/index.js"}',
      'node_modules/cjs-dep/lib/index.js': [
        "'use strict';",
        "const fs = require('fs');",
        "const path = require('path');",
        'module.exports = () => ({',
        "  text: fs.readFileSync(path.join(__dirname, '..', 'data', 'greeting.txt'), 'utf8'),",
        '  file: __filename,',
        "  helper: require.resolve('./helper'),",
        '});',
      ].join('\n'),
      'node_modules/cjs-dep/lib/helper.js': 'module.exports = 1;\n',
      'node_modules/cjs-dep/data/greeting.txt': token,
    });
    assert.equal((await deploy('reader', dir)).status, 201);
    // The running code must read the deployed copy, never the folder it came from.
    fs.writeFileSync(path.join(dir, 'node_modules/cjs-dep/data/greeting.txt'), 'edited later');
    const reply = await call('POST', '/v1/functions/reader/invoke', {});
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const dep = path.join(deployedCode('reader'), 'node_modules/cjs-dep');
    assert.deepEqual(reply.body, {
      text: token,
      file: path.join(dep, 'lib/index.js'),
      helper: path.join(dep, 'lib/helper.js'),
    });
  });

  it('better-sqlite3 in the function folder loads its native addon and runs SQL', async () => {
    const dir = write(path.join(codeRoot, 'sqlite'), {
      'index.mjs': [
        "import Database from 'better-sqlite3';",
        "const db = new Database(':memory:');",
        'export async function handler(event) {',
        "  return db.prepare('select ? * 2 as doubled, sqlite_version() as version').get(event.n);",
        '}',
      ].join('\n'),
    });
    // The package as npm installs it, less the SQLite sources it builds from.
    const from = path.join(REPO_MODULES, 'better-sqlite3');
    const to = path.join(dir, 'node_modules', 'better-sqlite3');
    fs.cpSync(from, to, {
      recursive: true,
      filter: (src) => !['deps', 'src'].includes(path.relative(from, src)),
    });
    assert.equal((await deploy('sqlite', dir)).status, 201);
    const n = Math.floor(Math.random() * 1000);
    const reply = await call('POST', '/v1/functions/sqlite/invoke', { n });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const row = reply.body as { doubled: number; version: string };
    assert.equal(row.doubled, n * 2);
    assert.match(row.version, /^3\.\d+\.\d+$/);
  });

  it('fails the deploy, not every invoke, when such a dependency is outside the function folder', async () => {
    // A workspace: the package sits in the parent folder's node_modules, which is not deployed.
    const workspace = path.join(codeRoot, 'workspace');
    write(workspace, {
      'node_modules/hoisted/index.js':
        "module.exports = () => require('fs').readFileSync(__dirname + '/data.txt', 'utf8');\n",
      'node_modules/hoisted/data.txt': 'unreachable',
      'fn/index.mjs': "import read from 'hoisted';\nexport const handler = () => read();\n",
    });
    const reply = await deploy('hoisted', path.join(workspace, 'fn'));
    assert.equal(reply.status, 400);
    const { error } = reply.body as { error: { code: string; message: string } };
    assert.equal(error.code, 'InvalidSpec');
    assert.match(
      error.message,
      /node_modules\/hoisted\/index\.js:1:\d+: uses __dirname, but it is outside the function folder/,
    );
  });
});
