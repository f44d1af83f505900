import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { PetriError } from '../errors.ts';

const execFileAsync = promisify(execFile);

/**
 * The oldest Node major instances may run: the instance host and function
 * bundles are built for it (bundle.ts), so anything newer runs them too.
 */
export const INSTANCE_NODE_MIN_MAJOR = 20;

/** How long `BINARY --version` may take before the binary is judged broken. */
const VERSION_TIMEOUT_MS = 10_000;

/** The Node binary instances run, as checked at start. */
export interface InstanceNode {
  binary: string;
  /** What `binary --version` printed, e.g. "v20.20.2". */
  version: string;
}

/**
 * Checks config `runtime.nodeBinary` before the node starts: an absolute
 * path to an executable file that reports a Node version of at least
 * INSTANCE_NODE_MIN_MAJOR. A bad one fails the start with `InvalidRequest`
 * naming the field, instead of every instance failing later.
 */
export async function checkNodeBinary(binary: string): Promise<InstanceNode> {
  const invalid = (message: string): PetriError =>
    new PetriError('InvalidRequest', `config runtime.nodeBinary "${binary}" ${message}`, {
      issues: [{ field: 'runtime.nodeBinary', message }],
    });
  if (!path.isAbsolute(binary)) throw invalid('is not an absolute path');
  const stat = await fs.stat(binary).catch(() => undefined);
  if (!stat) throw invalid('does not exist');
  if (!stat.isFile()) throw invalid('is not a file');
  try {
    await fs.access(binary, fs.constants.X_OK);
  } catch {
    throw invalid('is not executable');
  }
  let printed: string;
  try {
    const { stdout } = await execFileAsync(binary, ['--version'], {
      encoding: 'utf8',
      timeout: VERSION_TIMEOUT_MS,
    });
    printed = stdout.trim();
  } catch (err) {
    throw invalid(`failed to run with --version: ${(err as Error).message.split('\n')[0]}`);
  }
  const match = /^v(\d+)\.\d+\.\d+\S*$/.exec(printed);
  if (!match) {
    const shown = printed.length > 60 ? `${printed.slice(0, 60)}…` : printed;
    throw invalid(`does not report a Node version with --version (it printed "${shown}")`);
  }
  if (Number(match[1]) < INSTANCE_NODE_MIN_MAJOR)
    throw invalid(`is Node ${printed}; instances need Node ${INSTANCE_NODE_MIN_MAJOR} or newer`);
  return { binary, version: printed };
}
