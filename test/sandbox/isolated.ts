import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { assertCleanRun, runInTestNamespace } from '../helpers/test-namespace.ts';

const CASE_CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'case-child.ts');

/** Where a subject lives, so a child process can import it. */
export interface SubjectRef {
  /** Absolute path of the module that exports the subject. */
  module: string;
  exportName: string;
}

export type CaseOutcome = ({ ok: true } | { ok: false; error: string }) & { ms: number };

/** Runs planned cases one after another, each to an outcome (the child side of an isolated run). */
export async function runPlanned(
  plan: PlannedCase[],
  run: (name: string, key: string) => Promise<void>,
): Promise<Record<string, CaseOutcome>> {
  const outcomes: Record<string, CaseOutcome> = {};
  for (const { name, key } of plan) {
    const started = performance.now();
    const ms = (): number => Math.round(performance.now() - started);
    try {
      await run(name, key);
      outcomes[name] = { ok: true, ms: ms() };
    } catch (error) {
      const text = error instanceof Error ? String(error.stack) : String(error);
      outcomes[name] = { ok: false, error: text, ms: ms() };
    }
  }
  return outcomes;
}

/** One case to run in the child, with the node key it uses. */
export interface PlannedCase {
  name: string;
  key: string;
}

/**
 * Runs every planned case of a subject in one child process inside a fresh
 * test namespace (see runInTestNamespace), started by the first test that
 * asks and shared by the rest: one namespace and one tsx start for the whole
 * suite instead of one per case. `tags` are the node tags whose leftovers are
 * checked after the child is done.
 */
export function isolatedRun(
  ref: SubjectRef,
  plan: PlannedCase[],
  tags: string[],
): () => Promise<IsolatedOutcomes> {
  let outcomes: Promise<IsolatedOutcomes> | undefined;
  return () => {
    outcomes ??= runInTestNamespace(tags, CASE_CHILD, [
      ref.module,
      ref.exportName,
      JSON.stringify(plan),
    ]).then((run) => {
      let runError: string | undefined;
      try {
        assertCleanRun(run, `the ${ref.exportName} cases`);
      } catch (error) {
        runError = String(error);
      }
      const cases = (run.figures ?? {}) as Record<string, CaseOutcome>;
      return { cases, runError };
    });
    return outcomes;
  };
}

export interface IsolatedOutcomes {
  cases: Record<string, CaseOutcome>;
  /** Why the run as a whole failed (the child crashed, or left something in the namespace). */
  runError: string | undefined;
}

/** Fails the test with its case's error from the child, or why the case never ran there. */
export function assertOutcome(
  t: Pick<TestContext, 'diagnostic'>,
  outcomes: IsolatedOutcomes,
  name: string,
): void {
  const outcome = outcomes.cases[name];
  if (!outcome) throw new Error(`case "${name}" did not run: ${outcomes.runError}`);
  t.diagnostic(`ran in the test namespace in ${outcome.ms} ms`);
  if (!outcome.ok) throw new Error(`in the test namespace: ${outcome.error}`);
}

/** The name of the extra test an isolated suite gets: its run as a whole. */
export const CLEAN_RUN_TEST =
  'the isolated run exits cleanly and leaves nothing in the test namespace';

/** Fails when the child crashed or left links or namespaces behind (no one case owns those). */
export function assertCleanOutcomes(outcomes: IsolatedOutcomes): void {
  if (outcomes.runError) throw new Error(outcomes.runError);
}
