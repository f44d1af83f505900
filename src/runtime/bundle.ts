import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { PetriError } from '../errors.ts';
import { INSTANCE_NODE_MIN_MAJOR } from './node-binary.ts';

/** Instances run the host and the bundles on any Node from this major on (config runtime.nodeBinary). */
const TARGET = `node${INSTANCE_NODE_MIN_MAJOR}`;

const HANDLER_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];

/** ESM bundles may still hold `require` calls from CommonJS dependencies. */
const REQUIRE_SHIM =
  "import { createRequire as __petriCreateRequire } from 'node:module';" +
  'const require = __petriCreateRequire(import.meta.url);';

/** Splits "index.handler" into the module file stem and the export name. */
export function parseHandler(handler: string): { file: string; exportName: string } {
  const dot = handler.lastIndexOf('.');
  if (dot <= 0) return { file: handler, exportName: 'handler' };
  return { file: handler.slice(0, dot), exportName: handler.slice(dot + 1) };
}

async function findEntry(codeDir: string, file: string): Promise<string> {
  const candidates = path.extname(file) ? [file] : HANDLER_EXTENSIONS.map((ext) => file + ext);
  for (const candidate of candidates) {
    const full = path.join(codeDir, candidate);
    try {
      if ((await fs.stat(full)).isFile()) return full;
    } catch {
      // try the next extension
    }
  }
  throw new PetriError('InvalidSpec', `handler file "${file}" not found in the function code`, {
    issues: [
      { field: 'handler', message: `no ${file}{${HANDLER_EXTENSIONS.join(',')}} in the code` },
    ],
  });
}

/**
 * Bundles a `node` function's handler module (JS or TS, ESM or CJS) and its
 * dependencies into one ESM file, so compile errors surface at deploy time.
 */
export async function bundleHandler(
  codeDir: string,
  handler: string,
  outFile: string,
): Promise<void> {
  const entry = await findEntry(codeDir, parseHandler(handler).file);
  try {
    await esbuild.build({
      entryPoints: [entry],
      outfile: outFile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: TARGET,
      banner: { js: REQUIRE_SHIM },
      logLevel: 'silent',
      absWorkingDir: codeDir,
    });
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    const errors = (failure.errors ?? []).map((e) => ({
      file: e.location?.file,
      line: e.location?.line,
      column: e.location?.column,
      text: e.text,
    }));
    const first = errors[0];
    const where = first?.file ? `${first.file}:${first.line}:${first.column}: ` : '';
    throw new PetriError('InvalidSpec', `bundling failed: ${where}${first?.text ?? String(err)}`, {
      errors,
    });
  }
}

/** Builds the instance host script (src/runtime/host.ts) into `outFile`. */
export async function buildHost(outFile: string): Promise<void> {
  const source = path.join(path.dirname(fileURLToPath(import.meta.url)), 'host.ts');
  await esbuild.build({
    entryPoints: [source],
    outfile: outFile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: TARGET,
    logLevel: 'silent',
  });
}
