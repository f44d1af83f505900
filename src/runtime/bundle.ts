import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { PetriError } from '../errors.ts';
import {
  LOCATION_DEFINES,
  type LineShift,
  locationBanner,
  moduleLocationsPlugin,
} from './module-locations.ts';
import { INSTANCE_NODE_MIN_MAJOR } from './node-binary.ts';

/** Instances run the host and the bundles on any Node from this major on (config runtime.nodeBinary). */
export const TARGET = `node${INSTANCE_NODE_MIN_MAJOR}`;

const HANDLER_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];

/** Splits "index.handler" into the module file stem and the export name. */
export function parseHandler(handler: string): { file: string; exportName: string } {
  const dot = handler.lastIndexOf('.');
  if (dot <= 0) return { file: handler, exportName: 'handler' };
  return { file: handler.slice(0, dot), exportName: handler.slice(dot + 1) };
}

export async function findEntry(codeDir: string, file: string): Promise<string> {
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

export interface BundleOptions {
  /** Folders searched for packages after the code's own node_modules. */
  nodePaths?: string[];
  /**
   * Real paths the bundle may read from; an import resolving (through any
   * symlink) anywhere else fails the bundle. Unset: anywhere.
   */
  readableRoots?: string[];
}

const CONFINED = Symbol('confined');

function isUnder(file: string, root: string): boolean {
  return file === root || file.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/**
 * Resolves every import with esbuild's own rules, then refuses files whose
 * real path is outside `roots`: the bundler runs as the daemon (root), and
 * function code must not make it read `/etc/shadow` or another function.
 */
export function confineTo(roots: string[]): esbuild.Plugin {
  return {
    name: 'petri-confine',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === CONFINED) return undefined;
        const result = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          namespace: args.namespace,
          resolveDir: args.resolveDir,
          with: args.with,
          pluginData: CONFINED,
        });
        if (result.errors.length > 0) return { errors: result.errors };
        if (!result.external && result.namespace === 'file') {
          const real = await fs.realpath(result.path).catch(() => result.path);
          if (!roots.some((root) => isUnder(real, root))) {
            return { errors: [{ text: `"${args.path}" resolves outside the function's code` }] };
          }
        }
        return {
          path: result.path,
          external: result.external,
          namespace: result.namespace,
          sideEffects: result.sideEffects,
          suffix: result.suffix,
          pluginData: result.pluginData,
        };
      });
    },
  };
}

/**
 * The compiler options of the code's own tsconfig.json, and nothing else:
 * esbuild would follow its `extends` to any file on the node (and quote it
 * in the error). A tsconfig that is not plain JSON (comments) is ignored.
 */
export async function ownTsconfig(codeDir: string): Promise<string> {
  try {
    const parsed = JSON.parse(await fs.readFile(path.join(codeDir, 'tsconfig.json'), 'utf8')) as {
      compilerOptions?: unknown;
    };
    const options = parsed.compilerOptions;
    if (options && typeof options === 'object') return JSON.stringify({ compilerOptions: options });
  } catch {
    // none, or not plain JSON
  }
  return '{}';
}

/**
 * Bundles a `node` function's handler module (JS or TS, ESM or CJS) and its
 * dependencies into one ESM file, so compile errors surface at deploy time.
 * `codeFromBundle` is where `codeDir`'s files are, relative to the bundle,
 * when it runs: every module's `__dirname`, `__filename`, `require.resolve`
 * and `import.meta.url` point there (see module-locations.ts).
 */
export async function bundleHandler(
  codeDir: string,
  handler: string,
  outFile: string,
  codeFromBundle: string,
  options: BundleOptions = {},
): Promise<void> {
  const entry = await findEntry(codeDir, parseHandler(handler).file);
  // Real paths on both sides, so modules esbuild finds through symlinks compare right.
  const root = await fs.realpath(codeDir);
  const shifts = new Map<string, LineShift>();
  try {
    await esbuild.build({
      nodePaths: options.nodePaths,
      tsconfigRaw: await ownTsconfig(codeDir),
      entryPoints: [entry],
      outfile: outFile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: TARGET,
      banner: { js: locationBanner(codeFromBundle) },
      define: LOCATION_DEFINES,
      plugins: [
        ...(options.readableRoots ? [confineTo(options.readableRoots)] : []),
        moduleLocationsPlugin(root, shifts),
      ],
      logLevel: 'silent',
      absWorkingDir: root,
    });
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    const errors = (failure.errors ?? []).map((e) => {
      const file = e.location?.file;
      const shift = file === undefined ? undefined : shifts.get(path.resolve(root, file));
      const column = e.location?.column;
      return {
        file,
        line: e.location?.line,
        column:
          shift && column !== undefined && e.location?.line === shift.line
            ? Math.max(0, column - shift.columns)
            : column,
        text: e.text,
      };
    });
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
  // Instances run it as an unprivileged uid, whatever the daemon's umask.
  await fs.chmod(outFile, 0o644);
  await fs.chmod(path.dirname(outFile), 0o755);
}
