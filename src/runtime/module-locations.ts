import fs from 'node:fs/promises';
import path from 'node:path';
import * as esbuild from 'esbuild';

/**
 * Where each bundled module is when the bundle runs.
 *
 * A bundle is one ESM file, so `__dirname`, `__filename` and `require.resolve`
 * do not exist in it, and `import.meta.url` names the bundle rather than the
 * module. A CommonJS dependency that reads a file next to itself
 * (`path.join(__dirname, 'x')`, a native addon's loader) would crash at every
 * invoke. esbuild's `define` turns each of those free names into a
 * module-local one, and this plugin declares it at the top of every module
 * that uses it, with the module's path in the deployed copy of the code,
 * computed at run time from the bundle's own URL (the bundle and the code
 * folder are bound together into the sandbox, under the version folder).
 */
export const LOCATION_DEFINES: Record<string, string> = {
  __filename: '__petri_filename',
  __dirname: '__petri_dirname',
  'require.resolve': '__petri_resolve',
  'import.meta.filename': '__petri_filename',
  'import.meta.dirname': '__petri_dirname',
  'import.meta.url': '__petri_url',
};

/** The names that only make sense for a file that is deployed (CommonJS's). */
const FILE_NAMES = ['__filename', '__dirname', 'require.resolve'];

/**
 * The bundle's prologue: the `require` shim (CommonJS dependencies keep
 * `require` calls esbuild cannot follow, resolved from the code folder as
 * Node would from the function's root) and the helpers the module
 * declarations call. `codeFromBundle` is the code folder relative to the bundle.
 */
export function locationBanner(codeFromBundle: string): string {
  return [
    "import { createRequire as __petriCreateRequire } from 'node:module';",
    "import { dirname as __petriDirname, join as __petriJoin } from 'node:path';",
    "import { fileURLToPath as __petriFileURLToPath, pathToFileURL as __petriPathToFileURL } from 'node:url';",
    'const __petriBundleUrl = import.meta.url;',
    'const __petriBundleFile = __petriFileURLToPath(__petriBundleUrl);',
    'const __petriBundleDir = __petriDirname(__petriBundleFile);',
    `const __petriCodeDir = __petriJoin(__petriBundleDir, ${JSON.stringify(codeFromBundle)});`,
    'const __petriAt = (file) => __petriJoin(__petriCodeDir, file);',
    "const require = __petriCreateRequire(__petriCodeDir + '/');",
  ].join('\n');
}

/** How far a prologue moved one line of a file: esbuild's columns there are off by `columns`. */
export interface LineShift {
  line: number;
  columns: number;
}

const SCRIPT_FILE = /\.[cm]?[jt]sx?$/;

function loaderFor(file: string): esbuild.Loader {
  const ext = path.extname(file);
  if (ext === '.tsx' || ext === '.jsx') return ext.slice(1) as esbuild.Loader;
  return ext.includes('t') ? 'ts' : 'js';
}

/** True when `text`, parsed, refers to one of `names` as a free name (not in a comment or string). */
async function usesFreely(text: string, file: string, names: string[]): Promise<boolean> {
  const probe = '__petri_probe__';
  try {
    const { code } = await esbuild.transform(text, {
      loader: loaderFor(file),
      define: Object.fromEntries(names.map((name) => [name, probe])),
      logLevel: 'silent',
    });
    return code.includes(probe);
  } catch {
    // Unparsable here (the build will say why); judge by the text.
    return true;
  }
}

/** 1-based line and column of the first mention of any of `names` in `text`. */
function firstMention(text: string, names: string[]): { line: number; column: number } {
  const index = Math.min(...names.map((n) => text.indexOf(n)).filter((i) => i >= 0));
  const before = text.slice(0, index).split('\n');
  return { line: before.length, column: before[before.length - 1].length };
}

/**
 * The esbuild plugin. `root` is the folder the bundle is built from, whose
 * files are deployed; a module outside it (a package found in a parent
 * folder's node_modules) has no deployed location, so one that asks for its
 * file fails the build with a clear error instead of every invoke.
 * `shifts` records, per file, the line whose columns the prologue moved.
 */
export function moduleLocationsPlugin(
  root: string,
  shifts: Map<string, LineShift>,
): esbuild.Plugin {
  return {
    name: 'petri-module-locations',
    setup(build) {
      build.onLoad({ filter: SCRIPT_FILE, namespace: 'file' }, async (args) => {
        const text = await fs.readFile(args.path, 'utf8');
        const used = Object.keys(LOCATION_DEFINES).filter((name) => text.includes(name));
        // Handing back what was read spares esbuild reading every file a second time.
        if (used.length === 0) return { contents: text, loader: loaderFor(args.path) };
        const rel = path.relative(root, args.path);
        const inside = rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
        let values: Record<string, string>;
        if (inside) {
          const file = JSON.stringify(rel.split(path.sep).join('/'));
          values = {
            __petri_filename: `__petriAt(${file})`,
            __petri_dirname: `__petriDirname(__petriAt(${file}))`,
            __petri_url: `__petriPathToFileURL(__petriAt(${file})).href`,
            __petri_resolve: `__petriCreateRequire(__petriAt(${file})).resolve`,
          };
        } else {
          const fileNames = FILE_NAMES.filter((name) => used.includes(name));
          if (fileNames.length > 0 && (await usesFreely(text, args.path, fileNames))) {
            return {
              errors: [
                {
                  text:
                    `uses ${fileNames.join(', ')}, but it is outside the function folder ${root}, ` +
                    'so the files next to it are not deployed: install its package inside the function folder',
                  location: { file: rel, ...firstMention(text, fileNames) },
                },
              ],
            };
          }
          // import.meta in a module that is not deployed keeps naming the bundle.
          values = {
            __petri_filename: '__petriBundleFile',
            __petri_dirname: '__petriBundleDir',
            __petri_url: '__petriBundleUrl',
          };
        }
        // A name only mentioned (in a comment, say) in a module not deployed has no value.
        const locals = [...new Set(used.map((name) => LOCATION_DEFINES[name]))].filter(
          (local) => local in values,
        );
        const prologue = `var ${locals.map((local) => `${local} = ${values[local]}`).join(', ')};`;
        // After a hashbang line, which must stay first; on the same line as the code
        // after it, so line numbers in errors stay right (columns are fixed up).
        const lineEnd = text.indexOf('\n');
        const hashbang = !text.startsWith('#!')
          ? ''
          : lineEnd < 0
            ? `${text}\n`
            : text.slice(0, lineEnd + 1);
        shifts.set(args.path, { line: hashbang ? 2 : 1, columns: prologue.length });
        return {
          contents: hashbang + prologue + text.slice(hashbang.length),
          loader: loaderFor(args.path),
        };
      });
    },
  };
}
