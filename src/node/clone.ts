import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Makes `to` a copy of the version folder `from` (code and bundle) by hard
 * links, for a config-only version: no file is read or written, so it is
 * fast and takes no space, and it has the same digest. Both folders are the
 * node's own (modes already fixed at deploy), and instances bind them
 * read-only, so sharing inodes is safe. Symlinks are copied as links (they
 * were checked to stay inside the code at deploy). On failure `to` is removed.
 */
export async function cloneVersionFolder(from: string, to: string): Promise<void> {
  await fs.rm(to, { recursive: true, force: true });
  try {
    await fs.mkdir(to, { mode: 0o755 });
    const entries = await fs.readdir(from, { recursive: true, withFileTypes: true });
    // Parents come before their children in readdir's recursive order only by luck: sort by depth.
    const relative = (entry: (typeof entries)[number]): string =>
      path.relative(from, path.join(entry.parentPath, entry.name));
    const sorted = entries
      .map((entry) => ({ entry, rel: relative(entry) }))
      .sort((a, b) => a.rel.split(path.sep).length - b.rel.split(path.sep).length);
    for (const { entry, rel } of sorted) {
      const source = path.join(from, rel);
      const target = path.join(to, rel);
      if (entry.isDirectory()) await fs.mkdir(target, { mode: 0o755 });
      else if (entry.isSymbolicLink()) await fs.symlink(await fs.readlink(source), target);
      else if (entry.isFile()) await fs.link(source, target);
      else throw new Error(`unexpected entry ${rel} in ${from}`);
    }
  } catch (err) {
    await fs.rm(to, { recursive: true, force: true });
    throw err;
  }
}
