import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findLeftovers } from '../../src/net/index.ts';
import { requireRoot } from '../helpers/root.ts';

const SCENARIOS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scenarios.ts');

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(file: string, args: string[]): Promise<Outcome> {
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

async function ok(file: string, args: string[]): Promise<string> {
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

/**
 * Why the live tests cannot run here, or undefined. Probes inside a
 * throwaway namespace so not even a probe device touches the host's.
 */
const TBF_PROBE = 'qdisc add dev pprobe root tbf rate 1mbit burst 4k latency 50ms';

let probed: { missing: string | undefined } | undefined;

function missingMechanism(): string | undefined {
  probed ??= { missing: probeMechanisms() };
  return probed.missing;
}

function probeMechanisms(): string | undefined {
  const ns = `ptest-probe-${process.pid}`;
  if (!succeeds('ip', ['netns', 'add', ns])) return 'cannot create a network namespace';
  try {
    const checks: [string, string, string[]][] = [
      ['nsenter', 'nsenter', ['--version']],
      ['ifb', 'ip', ['-n', ns, 'link', 'add', 'pprobe', 'type', 'ifb']],
      ['tbf', 'tc', ['-n', ns, ...TBF_PROBE.split(' ')]],
      ['iptables nat', 'ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'nat', '-S']],
      ['iptables-restore', 'iptables-restore', ['--version']],
      ['iperf3', 'iperf3', ['--version']],
    ];
    const missing = checks.filter(([, file, args]) => !succeeds(file, args)).map(([name]) => name);
    return missing.length > 0 ? `missing: ${missing.join(', ')}` : undefined;
  } finally {
    succeeds('ip', ['netns', 'del', ns]);
  }
}

function randomTag(): string {
  return 't' + Array.from(randomBytes(4), (b) => String.fromCharCode(97 + (b % 26))).join('');
}

/**
 * Runs one scenario inside a fresh network namespace and removes the
 * namespace — and any instance namespace the scenario left — afterwards,
 * whether it passed or not.
 */
async function inTestNamespace(t: TestContext, scenario: string): Promise<Record<string, unknown>> {
  const tag = randomTag();
  const testNs = `ptest-${tag}`;
  await ok('ip', ['netns', 'add', testNs]);
  try {
    await ok('ip', ['-n', testNs, 'link', 'set', 'lo', 'up']);
    const args = [
      'netns',
      'exec',
      testNs,
      process.execPath,
      '--import',
      'tsx',
      SCENARIOS,
      scenario,
      tag,
    ];
    const out = await exec('ip', args);
    assert.equal(out.code, 0, `scenario ${scenario} failed:\n${out.stderr}\n${out.stdout}`);
    // Inside the test namespace only lo is left: no bridge, veth, IFB (nor their qdiscs).
    const links = await ok('ip', ['-n', testNs, '-o', 'link', 'show']);
    assert.deepEqual(
      links
        .trim()
        .split('\n')
        .map((l) => l.split(': ')[1]),
      ['lo'],
    );
    const line = out.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    assert.ok(line, `no RESULT line:\n${out.stdout}`);
    const figures = JSON.parse(line.slice('RESULT '.length)) as Record<string, unknown>;
    t.diagnostic(`${scenario}: ${JSON.stringify(figures)}`);
    return figures;
  } finally {
    await exec('ip', ['netns', 'del', testNs]);
    // Instance namespace names are global; a failed scenario may leave some behind.
    const left = await findLeftovers(tag, new Set());
    for (const name of [...left.netns, `ptout-${tag}`]) await exec('ip', ['netns', 'del', name]);
    assert.deepEqual(left, { netns: [], links: [] }, `leftovers of ${tag}`);
  }
}

test('instances get an address; reach neither the node, each other nor private ranges; only egress routes out', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inTestNamespace(t, 'topology');
});

test('a restarted node removes a crashed run’s namespaces, links and rules', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inTestNamespace(t, 'crash');
});

test('shaping holds both ways at 50 Mbit/s and cannot be removed from inside', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inTestNamespace(t, 'shaping');
});

test('prepare from the pool vs without (median of 20)', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inTestNamespace(t, 'measure');
});
