import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canMakeTestbed, createTestbed, type Testbed } from './testbed.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../cli/main.ts');
const LISTENING = /Petri node listening on (\S+)/;

export interface DaemonOptions {
  stateDir: string;
  /** Extra `petri serve` flags. */
  args?: string[];
  /** JSON config passed with --config (written by the caller). */
  configFile?: string;
  /** Reuse a namespace (e.g. across a restart); otherwise one is made when possible. */
  testbed?: Testbed;
  /** Run on loopback even as root (for callers that need no isolation). */
  loopback?: boolean;
  startTimeoutMs?: number;
  /**
   * Folders `source.path` deploys may read besides the node's defaults;
   * default: the OS temp dir, where tests and benchmarks write functions.
   */
  allowSourcePaths?: string[];
  /** The API token (PETRI_TOKEN); default: a fresh random one. Pass the old one across a restart. */
  token?: string;
}

export interface Daemon {
  url: string;
  token: string;
  /** `Authorization: Bearer <token>`, for requests made without the CLI. */
  headers: { authorization: string };
  child: ChildProcess;
  testbed?: Testbed;
  /** Everything the daemon printed, for diagnosis. */
  output(): string;
  /** Stops the daemon with `signal` (SIGTERM: graceful; SIGKILL: a crash) and waits for it. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the daemon and removes its namespace. */
  close(): Promise<void>;
}

/**
 * Starts `petri serve` as a child process. As root it runs inside a fresh
 * network namespace (see Testbed) and listens on the namespace's address, so
 * the bridge and instance namespaces it makes never touch this host's network.
 */
export async function spawnDaemon(options: DaemonOptions): Promise<Daemon> {
  const testbed =
    options.testbed ?? (!options.loopback && canMakeTestbed() ? await createTestbed() : undefined);
  const host = testbed ? testbed.innerAddress : '127.0.0.1';
  const serve = [process.execPath, '--import', 'tsx', MAIN, 'serve', '--host', host, '--port', '0'];
  serve.push('--state-dir', options.stateDir, '--log-level', 'warn');
  if (options.configFile) serve.push('--config', options.configFile);
  for (const dir of options.allowSourcePaths ?? [os.tmpdir()]) serve.push('--allow-source', dir);
  serve.push(...(options.args ?? []));
  const command = testbed ? [...testbed.nsenterArgs(), ...serve] : serve;
  const token = options.token ?? randomBytes(24).toString('base64url');
  const child = spawn(command[0], command.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PETRI_TOKEN: token },
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`daemon did not start in time:\n${output}`)),
      options.startTimeoutMs ?? 30_000,
    );
    const check = (): void => {
      const match = LISTENING.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before listening:\n${output}`));
    });
  }).catch(async (err: Error) => {
    child.kill('SIGKILL');
    if (!options.testbed) await testbed?.close();
    throw err;
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    url,
    token,
    headers: { authorization: `Bearer ${token}` },
    child,
    testbed,
    output: () => output,
    stop,
    close: async () => {
      await stop('SIGTERM');
      if (!options.testbed) await testbed?.close();
    },
  };
}
