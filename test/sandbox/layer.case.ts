/**
 * The IsolationLayer conformance suite: behaviour every layer (bwrap, cgroup,
 * network) must show, whatever it isolates. Each layer's test file calls
 * `describeLayerCases` with a subject that says how to make the layer and
 * how to see what it left on the system.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { IsolationLayer, LayerInstance, SandboxSpec } from '../../src/sandbox/index.ts';
import { requireRoot, type MechanismCheck } from '../helpers/root.ts';
import {
  assertCleanOutcomes,
  assertOutcome,
  CLEAN_RUN_TEST,
  isolatedRun,
  runPlanned,
  type CaseOutcome,
  type PlannedCase,
  type SubjectRef,
} from './isolated.ts';

export interface LayerSubject {
  readonly kind: 'layer';
  readonly name: string;
  /** A fresh layer for node tag `tag`; `off` switches its mechanisms off in the config. */
  make(tag: string, options?: { off?: boolean }): IsolationLayer;
  /** A spec for instance `id` whose folders exist. */
  spec(id: string): SandboxSpec;
  /** Why this layer cannot be active here (asked only as root). */
  missing: MechanismCheck;
  /** True when `prepare` makes something on the system; bwrap only adds arguments. */
  makesTraces: boolean;
  /**
   * What exists on the system for one prepared instance, as identities (a
   * namespace made again under the same name is another identity).
   */
  traces(tag: string, instance: LayerInstance): Promise<string[]>;
  /** Everything of node tag `tag` on the system, node-wide resources included. */
  leftovers(tag: string): Promise<string[]>;
  /** Waits for the layer's background work (pool refills), so an abandoned layer stays as left. */
  settle?(layer: IsolationLayer): Promise<void>;
  /** Removes whatever a failed case left of `tag` (after every case; a no-op after a pass). */
  cleanup?(tag: string): Promise<void>;
}

interface LayerCase {
  name: string;
  /** Needs root and the real mechanism; runs in the test namespace when the subject asks for one. */
  real: boolean;
  run(subject: LayerSubject, tag: string): Promise<void>;
}

const COMMAND = ['/bin/sh', '-c', 'echo "ran in $(pwd)"'];

/** Runs `command` wrapped by the layer, as the process driver would, and waits for it. */
async function runWrapped(
  instance: LayerInstance,
  spec: SandboxSpec,
  command: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [file, ...args] = instance.wrap(command);
  // Descriptors the layer hands its command (bwrap's seccomp program), placed as the driver does.
  const descriptors = instance.descriptors?.() ?? [];
  const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe'];
  for (const { fd, source } of descriptors) stdio[fd] = source;
  for (let i = 0; i < stdio.length; i++) stdio[i] ??= 'ignore';
  const child = spawn(file, args, {
    cwd: spec.cwd,
    env: { PATH: process.env.PATH, ...instance.env },
    stdio: stdio as ['ignore', 'pipe', 'pipe', ...('ignore' | number)[]],
  });
  for (const { source } of descriptors) closeSync(source);
  if (child.pid !== undefined) instance.attach?.(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function assertRuns(instance: LayerInstance, spec: SandboxSpec): Promise<void> {
  const out = await runWrapped(instance, spec, COMMAND);
  assert.equal(out.code, 0, `wrapped command failed: ${out.stderr}`);
  assert.equal(out.stdout, `ran in ${spec.cwd}\n`);
}

function assertAllActive(layer: IsolationLayer): void {
  const inactive = layer.mechanisms().filter((m) => !m.active);
  assert.deepEqual(
    inactive.map((m) => `${m.name}: ${m.reason}`),
    [],
    'every mechanism is active',
  );
}

/** Elements of `before` still in `now`. */
function stillThere(before: string[], now: string[]): string[] {
  return before.filter((trace) => now.includes(trace));
}

export const layerCases: LayerCase[] = [
  {
    name: 'switched off in config, every mechanism reports off with a reason',
    real: false,
    async run(subject, tag) {
      const mechanisms = subject.make(tag, { off: true }).mechanisms();
      assert.ok(mechanisms.length > 0, 'it reports at least one mechanism');
      assert.equal(new Set(mechanisms.map((m) => m.name)).size, mechanisms.length, 'unique names');
      for (const m of mechanisms) {
        assert.equal(m.active, false, m.name);
        assert.ok(typeof m.reason === 'string' && m.reason.length > 0, `${m.name} says why`);
      }
    },
  },
  {
    name: 'switched off in config, it wraps nothing, makes nothing, and destroy is idempotent',
    real: false,
    async run(subject, tag) {
      const layer = subject.make(tag, { off: true });
      await layer.reconcile();
      const instance = await layer.prepare(subject.spec('off'));
      const command = ['node', 'host.js', '--flag'];
      assert.deepEqual(instance.wrap(command), command);
      assert.deepEqual(
        command,
        ['node', 'host.js', '--flag'],
        'the command is not changed in place',
      );
      assert.equal(instance.address, undefined);
      assert.deepEqual(await subject.leftovers(tag), []);
      await instance.destroy();
      await instance.destroy();
      await layer.close();
    },
  },
  {
    name: 'every mechanism is active, and mechanisms() hands out copies',
    real: true,
    async run(subject, tag) {
      const layer = subject.make(tag);
      assertAllActive(layer);
      const first = layer.mechanisms();
      for (const m of first) assert.equal(m.reason, undefined, `${m.name} has no reason to be off`);
      first[0].active = false;
      assert.equal(layer.mechanisms()[0].active, true, 'a caller cannot switch a mechanism off');
      await layer.close();
    },
  },
  {
    name: 'a prepared instance wraps a real command that runs and exits 0, and attaches to it',
    real: true,
    async run(subject, tag) {
      const layer = subject.make(tag);
      const spec = subject.spec('run');
      const instance = await layer.prepare(spec);
      await assertRuns(instance, spec);
      // Usage after attach is what the driver reads after each invocation.
      const usage = (await instance.usage?.()) ?? {};
      for (const [key, value] of Object.entries(usage)) {
        assert.ok(Number.isFinite(value) && value >= 0, `${key} = ${value}`);
      }
      await instance.destroy();
      await layer.close();
    },
  },
  {
    name: 'destroy removes what prepare made, and destroying twice is fine',
    real: true,
    async run(subject, tag) {
      const layer = subject.make(tag);
      await layer.reconcile();
      const spec = subject.spec('gone');
      const instance = await layer.prepare(spec);
      const made = await subject.traces(tag, instance);
      if (subject.makesTraces) assert.ok(made.length > 0, 'prepare made something to remove');
      await assertRuns(instance, spec);
      await Promise.all([instance.destroy(), instance.destroy()]);
      assert.deepEqual(stillThere(made, await subject.traces(tag, instance)), []);
      await instance.destroy();
      await layer.close();
      assert.deepEqual(await subject.leftovers(tag), []);
    },
  },
  {
    name: 'a fresh layer for the same tag reconciles away what a crashed one left',
    real: true,
    async run(subject, tag) {
      const crashed = subject.make(tag);
      await crashed.reconcile();
      const a = await crashed.prepare(subject.spec('crashed-a'));
      const b = await crashed.prepare(subject.spec('crashed-b'));
      await subject.settle?.(crashed);
      // The crashed layer is abandoned: neither destroyed nor closed.
      const left = [...(await subject.traces(tag, a)), ...(await subject.traces(tag, b))];
      if (subject.makesTraces) assert.ok(left.length > 0, 'the crash left something behind');

      const fresh = subject.make(tag);
      await fresh.reconcile();
      const now = [...(await subject.traces(tag, a)), ...(await subject.traces(tag, b))];
      assert.deepEqual(stillThere(left, now), [], 'the crashed instances are gone');
      const spec = subject.spec('after');
      const instance = await fresh.prepare(spec);
      await assertRuns(instance, spec);
      await instance.destroy();
      await fresh.close();
      assert.deepEqual(await subject.leftovers(tag), []);
    },
  },
  {
    name: 'close releases everything the layer made for the node, live instances included',
    real: true,
    async run(subject, tag) {
      const layer = subject.make(tag);
      await layer.reconcile();
      await layer.prepare(subject.spec('live'));
      if (subject.makesTraces) assert.ok((await subject.leftovers(tag)).length > 0);
      await layer.close();
      assert.deepEqual(await subject.leftovers(tag), []);
      await layer.close();
    },
  },
];

/** Runs one case; after a real one, removes what it may have left (the others make nothing). */
async function runCase(c: LayerCase, subject: LayerSubject, tag: string): Promise<void> {
  try {
    await c.run(subject, tag);
  } finally {
    if (c.real) await subject.cleanup?.(tag);
  }
}

/** Runs the named cases in this process, each with its own tag (the child side of an isolated run). */
export async function runLayerCases(
  subject: LayerSubject,
  plan: PlannedCase[],
): Promise<Record<string, CaseOutcome>> {
  return runPlanned(plan, async (name, key) => {
    const body = layerCases.find((c) => c.name === name);
    assert.ok(body, `no layer case "${name}"`);
    await runCase(body, subject, key);
  });
}

/** A node tag of 5 letters; `index` makes the cases of one run tell apart. */
function tagFor(base: string, index: number): string {
  return base + String.fromCharCode(97 + index);
}

/**
 * Registers every layer case for `subject`. With `isolated`, the real cases
 * run in a child process inside a test namespace (the network layer must
 * never build its bridge in this host's namespace); the others run here.
 */
export function describeLayerCases(
  subject: LayerSubject,
  options: { isolated?: SubjectRef } = {},
): void {
  const base = 't' + Array.from(randomBytes(3), (b) => String.fromCharCode(97 + (b % 26))).join('');
  const keyed = layerCases.map((c, i) => ({ ...c, key: tagFor(base, i) }));
  const real = keyed.filter((c) => c.real);
  const isolated =
    options.isolated &&
    isolatedRun(
      options.isolated,
      real.map(({ name, key }) => ({ name, key })),
      real.map((c) => c.key),
    );
  describe(`IsolationLayer conformance: ${subject.name}`, () => {
    for (const c of keyed) {
      test(c.name, async (t) => {
        if (c.real && !requireRoot(t, subject.missing)) return;
        if (c.real && isolated) assertOutcome(t, await isolated(), c.name);
        else await runCase(c, subject, c.key);
      });
    }
    if (isolated) {
      test(CLEAN_RUN_TEST, async (t) => {
        if (!requireRoot(t, subject.missing)) return;
        assertCleanOutcomes(await isolated());
      });
    }
  });
}
