import path from 'node:path';
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { PetriError } from '../errors.ts';
import { confineTo, findEntry, ownTsconfig, parseHandler, TARGET } from './bundle.ts';
import { LOCATION_DEFINES, moduleLocationsPlugin, type LineShift } from './module-locations.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * The CommonJS prologue of a snapshot entry: the helpers module-locations.ts
 * declarations call. Paths are absolute: the build and every restore see the
 * code at the same place (the version folder, bound at its host path).
 * node:module loads only when a module asks for `require.resolve`.
 */
function cjsBanner(outFile: string, codeDir: string): string {
  return [
    "const { dirname: __petriDirname, join: __petriJoin } = require('node:path');",
    "const { pathToFileURL: __petriPathToFileURL } = require('node:url');",
    "const __petriCreateRequire = (file) => require('node:module').createRequire(file);",
    `const __petriBundleFile = ${JSON.stringify(outFile)};`,
    'const __petriBundleDir = __petriDirname(__petriBundleFile);',
    'const __petriBundleUrl = __petriPathToFileURL(__petriBundleFile).href;',
    `const __petriCodeDir = ${JSON.stringify(codeDir)};`,
    'const __petriAt = (file) => __petriJoin(__petriCodeDir, file);',
  ].join('\n');
}

/**
 * The entry `node --build-snapshot` runs: the function's env applied, the
 * handler's module evaluated (its module-level initialisation is what the
 * snapshot keeps), and the instance host as the snapshot's main function,
 * so a restored process speaks the protocol like a cold one.
 */
function entrySource(userEntry: string, outFile: string): string {
  return [
    "import { startupSnapshot } from 'node:v8';",
    `import { runHost } from ${JSON.stringify(path.join(HERE, 'host-core.ts'))};`,
    `import ${JSON.stringify(path.join(HERE, 'snapshot-env.ts'))};`,
    `import * as fn from ${JSON.stringify(userEntry)};`,
    "const STDIO_HANDLES = ['PipeWrap', 'TTYWrap'];",
    'startupSnapshot.setDeserializeMainFunction(() =>',
    `  runHost({ hostFile: ${JSON.stringify(outFile)}, module: fn }),`,
    ');',
    // A timer or socket left by init would keep the builder running until its timeout.
    'const open = process.getActiveResourcesInfo().filter((r) => !STDIO_HANDLES.includes(r));',
    'if (open.length > 0) {',
    '  process.stderr.write(`open handles at the end of init: ${[...new Set(open)].join(", ")}\\n`);',
    '  process.exit(70);',
    '}',
  ].join('\n');
}

/**
 * Bundles a `node` handler with the instance host into one CommonJS file for
 * `node --build-snapshot` (which runs CommonJS only, and requires built-ins
 * only: every dependency is inside the bundle). `codeDir` is where the code
 * is at run time. Fails with InvalidSpec (and esbuild's reason) when the
 * code cannot be CommonJS, e.g. a top-level await.
 */
export async function bundleSnapshotEntry(
  codeDir: string,
  handler: string,
  outFile: string,
  readableRoots?: string[],
): Promise<void> {
  const userEntry = await findEntry(codeDir, parseHandler(handler).file);
  const root = await fs.realpath(codeDir);
  const shifts = new Map<string, LineShift>();
  try {
    await esbuild.build({
      stdin: { contents: entrySource(userEntry, outFile), resolveDir: root, loader: 'js' },
      tsconfigRaw: await ownTsconfig(codeDir),
      outfile: outFile,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: TARGET,
      banner: { js: cjsBanner(outFile, codeDir) },
      define: LOCATION_DEFINES,
      plugins: [
        ...(readableRoots ? [confineTo([...readableRoots, HERE])] : []),
        moduleLocationsPlugin(root, shifts),
      ],
      logLevel: 'silent',
      absWorkingDir: root,
    });
  } catch (err) {
    const first = (err as esbuild.BuildFailure).errors?.[0];
    const where = first?.location ? `${first.location.file}:${first.location.line}: ` : '';
    throw new PetriError(
      'InvalidSpec',
      `the snapshot entry cannot be bundled as CommonJS: ${where}${first?.text ?? String(err)}`,
    );
  }
  await fs.chmod(outFile, 0o644);
}
