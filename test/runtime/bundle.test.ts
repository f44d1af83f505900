/**
 * Module locations in `node` bundles, in-process: the bundle is built from a
 * source folder, the code copied next to it as a deploy does, the source
 * removed, and the bundle imported from there.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { PetriError } from '../../src/errors.ts';
import { bundleHandler } from '../../src/runtime/index.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bundle-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function write(dir: string, files: Record<string, string>): string {
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

/** Bundles `source` into `<version>/bundle.mjs` with its code in `<version>/code`, then drops `source`. */
async function deployLike(source: string, version: string, handler = 'index.handler') {
  const bundle = path.join(version, 'bundle.mjs');
  fs.mkdirSync(version, { recursive: true });
  await bundleHandler(source, handler, bundle, 'code');
  fs.cpSync(source, path.join(version, 'code'), { recursive: true });
  return { bundle, code: path.join(version, 'code') };
}

async function bundleError(source: string, handler = 'index.handler'): Promise<PetriError> {
  const out = path.join(root, `failed-${path.basename(source)}.mjs`);
  const failure = await bundleHandler(source, handler, out, 'code').then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(failure instanceof PetriError, `expected a PetriError, got ${String(failure)}`);
  assert.equal(failure.code, 'InvalidSpec');
  return failure;
}

describe('module locations in node bundles', () => {
  it('gives every module its own file in the deployed code, CommonJS and ESM alike', async () => {
    const source = write(path.join(root, 'src'), {
      'index.mjs': [
        "import fs from 'node:fs';",
        "import dep from 'dep';",
        'export async function handler() {',
        '  return {',
        '    dep: dep(),',
        "    data: fs.readFileSync(new URL('./data.txt', import.meta.url), 'utf8'),",
        '    url: import.meta.url,',
        '    dirname: import.meta.dirname,',
        '  };',
        '}',
      ].join('\n'),
      'data.txt': 'next to the handler',
      'node_modules/dep/package.json': '{"name": "dep", "main": "lib/main.js"}',
      'node_modules/dep/lib/main.js': [
        '#!/usr/bin/env node',
        "const path = require('path');",
        'module.exports = () => ({',
        '  dirname: __dirname,',
        '  filename: __filename,',
        "  relative: require.resolve('./other'),",
        "  bare: require.resolve('dep/package.json'),",
        "  lazy: require(path.join(__dirname, 'other.js')),",
        '});',
      ].join('\n'),
      'node_modules/dep/lib/other.js': 'module.exports = "other";\n',
    });
    const { bundle, code } = await deployLike(source, path.join(root, 'v1'));
    const text = fs.readFileSync(bundle, 'utf8');
    assert.ok(!text.includes(source), 'the bundle holds no build-time path');
    fs.rmSync(source, { recursive: true });
    const { handler } = (await import(pathToFileURL(bundle).href)) as {
      handler: () => Promise<unknown>;
    };
    const lib = path.join(code, 'node_modules/dep/lib');
    assert.deepEqual(await handler(), {
      dep: {
        dirname: lib,
        filename: path.join(lib, 'main.js'),
        relative: path.join(lib, 'other.js'),
        bare: path.join(code, 'node_modules/dep/package.json'),
        lazy: 'other',
      },
      data: 'next to the handler',
      url: pathToFileURL(path.join(code, 'index.mjs')).href,
      dirname: code,
    });
  });

  it('makes the same bundle wherever the version lives, so equal deploys stay one version', async () => {
    const files = {
      'index.cjs': 'exports.handler = async () => require("path").basename(__filename);\n',
    };
    const first = await deployLike(write(path.join(root, 'a'), files), path.join(root, 'va'));
    const second = await deployLike(write(path.join(root, 'b'), files), path.join(root, 'vb'));
    assert.equal(fs.readFileSync(first.bundle, 'utf8'), fs.readFileSync(second.bundle, 'utf8'));
  });

  it('keeps compile error positions right in a module that uses __dirname', async () => {
    const source = write(path.join(root, 'broken'), {
      'index.cjs': 'const here = __dirname; const x = (;\n',
    });
    const error = await bundleError(source);
    const [first] = (error.details as { errors: { line: number; column: number }[] }).errors;
    assert.deepEqual(
      { line: first.line, column: first.column },
      { line: 1, column: 'const here = __dirname; const x = ('.length },
    );
  });

  it('fails for a module outside the folder that asks for its file, and only then', async () => {
    const workspace = write(path.join(root, 'workspace'), {
      'node_modules/uses/index.js': 'module.exports = () => __dirname;\n',
      'node_modules/mentions/index.js':
        '// no __dirname here, only in this comment\nmodule.exports = () => "__filename";\n',
      'node_modules/esm/package.json': '{"name": "esm", "type": "module", "main": "index.js"}',
      'node_modules/esm/index.js': 'export const url = import.meta.url;\n',
      'ok/index.mjs': [
        "import mentions from 'mentions';",
        "import { url } from 'esm';",
        'export const handler = () => [mentions(), url];',
      ].join('\n'),
      'bad/index.mjs': "import uses from 'uses';\nexport const handler = () => uses();\n",
    });
    const ok = await deployLike(path.join(workspace, 'ok'), path.join(root, 'vok'));
    const { handler } = (await import(pathToFileURL(ok.bundle).href)) as {
      handler: () => unknown;
    };
    // A module that is not deployed keeps import.meta naming the bundle, as before.
    assert.deepEqual(handler(), ['__filename', pathToFileURL(ok.bundle).href]);
    const error = await bundleError(path.join(workspace, 'bad'));
    assert.match(
      error.message,
      /node_modules\/uses\/index\.js:1:\d+: uses __dirname, but it is outside the function folder/,
    );
  });
});
