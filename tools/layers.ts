import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** One import of a module in another top-level folder of `src/`. */
export interface FolderImport {
  from: string;
  to: string;
  /** The importing file and the imported file, relative to the source root. */
  file: string;
  target: string;
}

export interface LayerReport {
  /** Imports into another folder that do not go through its `index.ts`. */
  bypasses: FolderImport[];
  /** Sets of folders that import each other, directly or around a loop. */
  cycles: string[][];
}

/**
 * The unit of layering: a top-level folder of the source root (`node`,
 * `sandbox`), or a top-level file (`errors.ts`), which is its own unit.
 */
function unitOf(relative: string): string {
  return relative.split('/')[0];
}

function sourceFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.(ts|mts)$/.test(entry.name))
    .map((entry) => path.join(entry.parentPath, entry.name));
}

/** The relative imports (static, re-exports and dynamic) of one file, resolved to paths. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((ref) => ref.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => path.resolve(path.dirname(file), name));
}

/** Strongly connected components of more than one folder (Tarjan). */
function cyclesOf(edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let counter = 0;
  const visit = (unit: string): void => {
    index.set(unit, counter);
    low.set(unit, counter);
    counter += 1;
    stack.push(unit);
    onStack.add(unit);
    for (const next of edges.get(unit) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(unit, Math.min(low.get(unit)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(unit, Math.min(low.get(unit)!, index.get(next)!));
      }
    }
    if (low.get(unit) !== index.get(unit)) return;
    const component: string[] = [];
    for (;;) {
      const member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
      if (member === unit) break;
    }
    if (component.length > 1) found.push(component.sort());
  };
  for (const unit of [...edges.keys()].sort()) if (!index.has(unit)) visit(unit);
  return found;
}

/** Every import from one unit of the source root into another. */
export function folderImports(root: string): FolderImport[] {
  const absoluteRoot = path.resolve(root);
  const relativeTo = (file: string): string =>
    path.relative(absoluteRoot, file).split(path.sep).join('/');
  const found: FolderImport[] = [];
  for (const file of sourceFiles(absoluteRoot)) {
    const from = unitOf(relativeTo(file));
    for (const imported of importsOf(file)) {
      const target = relativeTo(imported);
      const to = unitOf(target);
      if (!target.startsWith('..') && to !== from)
        found.push({ from, to, file: relativeTo(file), target });
    }
  }
  return found;
}

/**
 * Checks the layering rules of a source tree: a folder's `index.ts` is the
 * only door into it, and no two top-level folders import each other, even
 * through others.
 *
 * @example const { bypasses, cycles } = checkLayers('src');
 */
export function checkLayers(root: string): LayerReport {
  const imports = folderImports(root);
  const bypasses = imports.filter(
    ({ to, target }) => target.includes('/') && target !== `${to}/index.ts`,
  );
  return { bypasses, cycles: cyclesOf(folderEdges(imports)) };
}

function folderEdges(imports: FolderImport[]): Map<string, Set<string>> {
  const edges = new Map<string, Set<string>>();
  for (const { from, to } of imports) {
    if (!edges.has(from)) edges.set(from, new Set());
    if (!edges.has(to)) edges.set(to, new Set());
    edges.get(from)!.add(to);
  }
  return edges;
}

/** The folder graph as text lines, `from → to, to`, for docs and reviews. */
export function folderGraph(root: string): string[] {
  const edges = folderEdges(folderImports(root));
  return [...edges.keys()]
    .sort()
    .filter((from) => edges.get(from)!.size > 0)
    .map((from) => `${from} → ${[...edges.get(from)!].sort().join(', ')}`);
}
