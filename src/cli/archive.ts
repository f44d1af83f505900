/** Packs a function folder for `deploy` when the node cannot read it by path. */
import { execFile } from 'node:child_process';
import { PetriError } from '../errors.ts';

/** Generous: the node enforces the real payload limit and says so in its error. */
const MAX_ARCHIVE_BYTES = 512 * 1024 * 1024;

/**
 * The folder's contents as a base64 tar.gz, paths relative to the folder
 * (so `petri.json` sits at the archive root). Uses the system `tar`, which
 * keeps file modes and symlinks as they are; `.git` is left out because it is
 * never function code and is often larger than the code itself.
 *
 * @example const archive = await archiveFolder('/home/me/fn'); // "H4sIAAAA..."
 */
export function archiveFolder(dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'tar',
      ['--exclude=./.git', '-czf', '-', '-C', dir, '.'],
      { encoding: 'buffer', maxBuffer: MAX_ARCHIVE_BYTES },
      (err, stdout, stderr) => {
        if (err) {
          const why = stderr.toString().trim() || err.message;
          reject(new PetriError('InvalidRequest', `cannot archive ${dir}: ${why}`));
          return;
        }
        resolve(stdout.toString('base64'));
      },
    );
  });
}
