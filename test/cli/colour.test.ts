/**
 * Tables carry ANSI colours only on a terminal that takes them: the real
 * `petri` binary with stdout on a pipe, and on a pseudo-terminal (`script`)
 * with and without NO_COLOR.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { table, takesColour } from '../../src/report/index.ts';

const run = promisify(execFile);
const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');
/** The start of an ANSI escape sequence (CSI). */
const ANSI = new RegExp(String.raw`\u001b\[`);

/**
 * A user's environment: no colour switches but each case's own, a colour
 * terminal type, and no CI (colour libraries take CI to mean "no colours",
 * which would hide colours printed where they should not be).
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { NO_COLOR: _n, FORCE_COLOR: _f, NODE_DISABLE_COLORS: _d, CI: _ci, ...env } = process.env;
  return { ...env, TERM: 'xterm-256color', ...extra };
}

function petriArgs(args: string[]): string[] {
  return [process.execPath, '--import', 'tsx', MAIN, ...args];
}

/** `petri ARGS` with stdout on a pipe. */
async function petriPiped(args: string[]): Promise<string> {
  const [command, ...rest] = petriArgs(args);
  return (await run(command, rest, { env: userEnv(), timeout: 60_000 })).stdout;
}

/** `petri ARGS` on a pseudo-terminal made by util-linux `script`; returns what the terminal showed. */
async function petriOnTerminal(args: string[], env: Record<string, string>): Promise<string> {
  const quoted = petriArgs(args)
    .map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  const { stdout } = await run('script', ['-qec', quoted, '/dev/null'], {
    env: userEnv(env),
    timeout: 60_000,
  });
  return stdout;
}

describe('colours in tables', () => {
  let dir: string;
  let trace: string;
  const preprocess = (out: string): string[] => [
    'trace',
    'preprocess',
    '--trace',
    trace,
    '--minutes',
    '2',
    '--out',
    join(dir, out),
  ];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'petri-colour-'));
    trace = join(dir, 'synth');
    await petriPiped(['trace', 'synth', '--functions', '20', '--minutes', '2', '--out', trace]);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('judges the stream: a pipe never takes colours, a terminal does unless it says no', () => {
    assert.equal(takesColour(new PassThrough()), false);
    assert.equal(takesColour({ isTTY: true, hasColors: () => true }), true);
    assert.equal(takesColour({ isTTY: true, hasColors: () => false }), false);
    assert.equal(takesColour({ isTTY: false, hasColors: () => true }), false);
    assert.doesNotMatch(table(['size', 'WD'], [[10, 0.42]], { colour: false }), ANSI);
  });

  it('petri trace preprocess prints a plain table when stdout is a pipe', async () => {
    const stdout = await petriPiped(preprocess('piped'));
    assert.match(stdout, /dropped: no invocations in window/);
    assert.doesNotMatch(stdout, ANSI);
  });

  it('keeps colours on a terminal, and drops them there under NO_COLOR', async () => {
    const coloured = await petriOnTerminal(preprocess('tty'), {});
    assert.match(coloured, /dropped: no invocations in window/);
    assert.match(coloured, ANSI);
    const noColour = await petriOnTerminal(preprocess('tty-no-colour'), { NO_COLOR: '1' });
    assert.match(noColour, /dropped: no invocations in window/);
    assert.doesNotMatch(noColour, ANSI);
  });
});
