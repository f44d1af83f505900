import fs from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { startNode, TOKEN_FILE, type RunningNode } from '../boot/index.ts';
import { defaultAllowedSourcePaths, EXAMPLES_DIR } from '../config.ts';
import { PetriError } from '../errors.ts';
import { errorText } from './error-text.ts';

interface ServeOptions {
  host?: string;
  port?: string;
  stateDir?: string;
  config?: string;
  memoryBudget?: string;
  logLevel?: string;
  examples?: boolean | string;
  allowSource?: string[];
}

async function readConfigFile(file: string | undefined): Promise<Record<string, unknown>> {
  if (!file) return {};
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PetriError('InvalidConfig', `cannot read config ${file}: ${(err as Error).message}`);
  }
}

/** Adds folders to `deploy.allowedSourcePaths`: the config file's list, else the default one. */
function allowSources(config: Record<string, unknown>, dirs: string[]): void {
  const deploy = (config.deploy ?? {}) as Record<string, unknown>;
  const listed = Array.isArray(deploy.allowedSourcePaths)
    ? (deploy.allowedSourcePaths as unknown[])
    : defaultAllowedSourcePaths();
  config.deploy = { ...deploy, allowedSourcePaths: [...new Set([...listed, ...dirs])] };
}

/** Deploys every folder with a petri.json under `dir`, and says how to call each. */
export async function deployExamples(running: RunningNode, dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const folder of (await fs.readdir(dir)).sort()) {
    const specFile = path.join(dir, folder, 'petri.json');
    const text = await fs.readFile(specFile, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const spec = JSON.parse(text) as { name?: string };
    const name = spec.name ?? folder;
    await running.node.deploy(name, { ...spec, source: { path: path.join(dir, folder) } });
    names.push(name);
  }
  return names;
}

const SAMPLE_EVENTS: Record<string, string> = {
  'hello-js': '{"name":"Petri"}',
  'hello-ts': '{"numbers":[1,2,3]}',
  'exec-python': '{"text":"the quick brown fox"}',
  'http-server': '{"text":"hello"}',
};

/** Where a person finds the API token: the file the node made, or the variable they set. */
function tokenHint(running: RunningNode): { shell: string; cliEnv: string } {
  if (process.env.PETRI_TOKEN) return { shell: '$PETRI_TOKEN', cliEnv: '' };
  const absolute = path.join(running.config.stateDir, TOKEN_FILE);
  const relative = path.relative(process.cwd(), absolute);
  const file = relative.startsWith('..') ? absolute : relative;
  const isDefault = file === path.join('.petri', TOKEN_FILE);
  return {
    shell: `$(cat ${file})`,
    cliEnv: isDefault ? '' : `PETRI_STATE_DIR=${path.dirname(file)} `,
  };
}

/** The size each service example is written for (its README): iperf3 pairs, Redis Cluster's 3 masters + 3 replicas. */
const GROUP_SIZES: Record<string, number> = { 'iperf3-pair': 2, redis: 6 };

function howToInvoke(running: RunningNode, names: string[]): string {
  const url = running.url;
  const hint = tokenHint(running);
  const lines = [`Petri node listening on ${url}`, ''];
  if (names.length > 0) {
    lines.push('Deployed example functions; try:');
    for (const name of names) {
      // A service runs as a group, never per invocation.
      if (running.node.getFunction(name).spec.runtime === 'service') {
        const size = GROUP_SIZES[name] ?? 3;
        lines.push(
          `  ${hint.cliEnv}npx petri --url ${url} group run ${name} --size ${size} --barrier ${size}   # a group`,
        );
        continue;
      }
      const data = SAMPLE_EVENTS[name] ?? '{}';
      lines.push(
        `  curl -s -H "Authorization: Bearer ${hint.shell}" -X POST ${url}/v1/functions/${name}/invoke -d '${data}'`,
      );
    }
    if (names.includes('http-server'))
      lines.push(`  curl -s '${url}/fn/http-server/any/path?q=1'   # a function URL`);
    lines.push(`  ${hint.cliEnv}npx petri --url ${url} invoke hello-js --data '{"name":"you"}'`);
    lines.push(`  ${hint.cliEnv}npx petri --url ${url} ls`);
    lines.push('');
  }
  lines.push('Press Ctrl+C to stop.');
  return lines.join('\n');
}

/** A start-up failure in words a person can act on (the port is the usual one). */
function startError(err: unknown): unknown {
  const { code, address, port } = err as { code?: string; address?: string; port?: number };
  if (code === 'EADDRINUSE')
    return new Error(
      `cannot listen on ${address}:${port}: the address is in use (another node? pick one with --port)`,
    );
  if (code === 'EADDRNOTAVAIL')
    return new Error(`cannot listen on ${address}: no such address here`);
  return err;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run a Petri node (the daemon) in the foreground')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default 8080)')
    .option('--state-dir <dir>', 'where the store and function code live (default ./.petri)')
    .option('--config <file>', 'node configuration as JSON (see docs/architecture.md)')
    .option('--memory-budget <mb>', 'sum of instance memory the node allows')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .option('--examples [dir]', 'deploy the example functions at start')
    .option(
      '--allow-source <dir>',
      'also allow source.path deploys from under <dir> (repeatable)',
      (dir: string, dirs: string[] = []) => [...dirs, path.resolve(dir)],
    )
    .action(async (options: ServeOptions) => {
      const examplesDir =
        typeof options.examples === 'string' ? path.resolve(options.examples) : EXAMPLES_DIR;
      let running: RunningNode;
      try {
        const config = await readConfigFile(options.config);
        const extraSources = [...(options.allowSource ?? [])];
        // Asking for examples from a folder is allowing deploys from it.
        if (options.examples) extraSources.push(examplesDir);
        if (extraSources.length > 0) allowSources(config, extraSources);
        if (options.host) config.host = options.host;
        if (options.port) config.port = Number(options.port);
        if (options.stateDir) config.stateDir = path.resolve(options.stateDir);
        if (options.memoryBudget) config.memoryBudgetMb = Number(options.memoryBudget);
        if (options.logLevel) config.logLevel = options.logLevel;
        running = await startNode(config);
      } catch (err) {
        process.stderr.write(errorText(startError(err)));
        process.exitCode = 1;
        return;
      }
      const stop = (): void => {
        running.log.info('stopping');
        void running.close().then(
          () => process.exit(0),
          (err: unknown) => {
            running.log.error({ err }, 'clean-up on stop failed');
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const names = options.examples ? await deployExamples(running, examplesDir) : [];
      process.stdout.write(howToInvoke(running, names) + '\n');
    });
}
