import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { findLeftovers, type Leftovers } from '../../src/net/index.ts';

/**
 * Runs test code that builds real network state (bridges, namespaces,
 * iptables rules) in a child process inside a network namespace the test
 * made, never in this host's own (DESIGN §10 safety rule). The child joins
 * with `nsenter --net` only: mounts stay shared, so cgroups and /run/netns
 * look as they do to a daemon under the harness.
 */

export interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function exec(file: string, args: string[]): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export async function ok(file: string, args: string[]): Promise<string> {
  const out = await exec(file, args);
  assert.equal(out.code, 0, `${file} ${args.join(' ')}: ${out.stderr}`);
  return out.stdout;
}

function succeeds(file: string, args: string[]): boolean {
  try {
    execFileSync(file, args, { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

const TBF_PROBE = 'qdisc add dev pprobe root tbf rate 1mbit burst 4k latency 50ms';

const probed = new Map<string, string | undefined>();

/**
 * Why the network layer cannot run for real here, or undefined. Probes inside
 * a throwaway namespace so not even a probe device touches the host's.
 * `extra` adds tool checks of the caller's own (e.g. iperf3).
 */
export function missingNetMechanism(extra: [string, string, string[]][] = []): string | undefined {
  const key = JSON.stringify(extra);
  if (!probed.has(key)) probed.set(key, probeMechanisms(extra));
  return probed.get(key);
}

function probeMechanisms(extra: [string, string, string[]][]): string | undefined {
  const ns = `ptest-probe-${process.pid}`;
  if (!succeeds('ip', ['netns', 'add', ns])) return 'cannot create a network namespace';
  try {
    const checks: [string, string, string[]][] = [
      ['nsenter', 'nsenter', ['--version']],
      ['ifb', 'ip', ['-n', ns, 'link', 'add', 'pprobe', 'type', 'ifb']],
      ['tbf', 'tc', ['-n', ns, ...TBF_PROBE.split(' ')]],
      ['iptables nat', 'ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'nat', '-S']],
      ['iptables-restore', 'iptables-restore', ['--version']],
      ...extra,
    ];
    const missing = checks.filter(([, file, args]) => !succeeds(file, args)).map(([name]) => name);
    return missing.length > 0 ? `missing: ${missing.join(', ')}` : undefined;
  } finally {
    succeeds('ip', ['netns', 'del', ns]);
  }
}

/** A node tag no other run uses: `t` and five lowercase letters. */
export function randomTag(): string {
  return 't' + Array.from(randomBytes(4), (b) => String.fromCharCode(97 + (b % 26))).join('');
}

/** What a child in a test namespace did, and what it left in there and outside. */
export interface NamespaceRun {
  outcome: Outcome;
  /** Its `RESULT {json}` line, parsed; undefined when it printed none. */
  figures: Record<string, unknown> | undefined;
  /** Links left inside the test namespace besides lo (bridge, veth, IFB). */
  links: string[];
  /** Per tag: its instance namespaces (global names) and links left behind. */
  leftovers: Record<string, Leftovers>;
}

/**
 * Runs `node --import tsx <script> ...args` inside a fresh network namespace
 * and removes the namespace — and any instance namespace of `tags` the child
 * left — afterwards, whether it passed or not. Reports rather than asserts;
 * see `inTestNamespace`.
 */
export async function runInTestNamespace(
  tags: string[],
  script: string,
  args: string[],
): Promise<NamespaceRun> {
  const testNs = `ptest-${tags[0]}`;
  await ok('ip', ['netns', 'add', testNs]);
  try {
    await ok('ip', ['-n', testNs, 'link', 'set', 'lo', 'up']);
    const command = ['--net=/run/netns/' + testNs, '--', process.execPath, '--import', 'tsx'];
    const outcome = await exec('nsenter', [...command, script, ...args]);
    const links = (await ok('ip', ['-n', testNs, '-o', 'link', 'show']))
      .trim()
      .split('\n')
      .map((line) => line.split(': ')[1])
      .filter((name) => name !== 'lo');
    const line = outcome.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    const figures = line
      ? (JSON.parse(line.slice('RESULT '.length)) as Record<string, unknown>)
      : undefined;
    return { outcome, figures, links, leftovers: await removeLeftNamespaces(tags) };
  } finally {
    await exec('ip', ['netns', 'del', testNs]);
    await removeLeftNamespaces(tags);
  }
}

/** Instance namespace names are global: a failed child may leave some behind. */
async function removeLeftNamespaces(tags: string[]): Promise<Record<string, Leftovers>> {
  const found: Record<string, Leftovers> = {};
  for (const tag of tags) {
    found[tag] = await findLeftovers(tag, new Set());
    for (const name of [...found[tag].netns, `ptout-${tag}`]) {
      await exec('ip', ['netns', 'del', name]);
    }
  }
  return found;
}

/** Fails unless the child exited 0 and left nothing: no link but lo, no namespace of `tags`. */
export function assertCleanRun(run: NamespaceRun, name: string): void {
  const { outcome } = run;
  assert.equal(outcome.code, 0, `${name} failed:\n${outcome.stderr}\n${outcome.stdout}`);
  assert.deepEqual(run.links, [], 'only lo is left in the test namespace');
  for (const [tag, left] of Object.entries(run.leftovers)) {
    assert.deepEqual(left, { netns: [], links: [] }, `leftovers of ${tag}`);
  }
}

/**
 * Runs a child in a fresh test namespace (see runInTestNamespace), asserts
 * that it passed and left nothing, and returns its `RESULT` figures.
 */
export async function inTestNamespace(
  t: Pick<TestContext, 'diagnostic'>,
  tags: string[],
  script: string,
  args: string[],
): Promise<Record<string, unknown>> {
  const run = await runInTestNamespace(tags, script, args);
  const name = [path.basename(script), ...args].join(' ');
  assertCleanRun(run, name);
  assert.ok(run.figures, `no RESULT line:\n${run.outcome.stdout}`);
  t.diagnostic(`${name}: ${JSON.stringify(run.figures)}`);
  return run.figures;
}
