import type { TestContext } from 'node:test';

/** Why a mechanism is missing, or undefined when it is there. */
export type MechanismCheck = () => string | undefined;

/**
 * Gate for tests that need root and a real isolation mechanism. Under
 * CI=true the real path must run, so a missing root or mechanism fails the
 * test; elsewhere it skips. Returns true when the test may run.
 *
 * @example test('memory limit', (t) => { if (!requireRoot(t, () => missingMemory())) return; … })
 */
export function requireRoot(
  t: TestContext,
  mechanismCheck: MechanismCheck = () => undefined,
): boolean {
  const missing = process.geteuid?.() !== 0 ? 'not running as root' : mechanismCheck();
  if (missing === undefined) return true;
  if (process.env.CI === 'true')
    throw new Error(`isolation mechanism missing under CI: ${missing}`);
  t.skip(`mechanism missing: ${missing}`);
  return false;
}
