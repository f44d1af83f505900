import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { checkLayers } from '../tools/layers.ts';
import { tempDir } from './helpers/tmp.ts';

function writeTree(root: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    writeFileSync(path.join(root, name), text);
  }
}

test('src has no cycle between folders and no import around a folder index', () => {
  const report = checkLayers(new URL('../src', import.meta.url).pathname);
  assert.deepEqual(report.bypasses, []);
  assert.deepEqual(report.cycles, []);
});

test('a cycle through three folders and an import past index.ts are both found', () => {
  const root = tempDir('petri-layers-');
  writeTree(root, {
    'a/index.ts': "export { a } from './a.ts';",
    'a/a.ts': "import { b } from '../b/index.ts'; export const a = b;",
    'b/index.ts': "export { c as b } from '../c/index.ts';",
    'c/index.ts': "export const c = 1; export type A = typeof import('../a/a.ts');",
    'd/index.ts': "import '../errors.ts'; export const d = 1;",
    'errors.ts': 'export const e = 1;',
  });
  const report = checkLayers(root);
  assert.deepEqual(report.cycles, [['a', 'b', 'c']]);
  assert.deepEqual(
    report.bypasses.map((b) => `${b.file} -> ${b.target}`),
    ['c/index.ts -> a/a.ts'],
  );
});
