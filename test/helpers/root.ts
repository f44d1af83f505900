import type { TestContext } from 'node:test';

/** Why a mechanism is missing, or undefined when it is there. */
export type MechanismCheck = () => string | undefined;

/**
 * Gate for tests that need root and a real isolation mechanism. Not root:
 * skip. Root but the mechanism is missing: fail under CI=true (CI runs as root
 * and must exercise the real path), else skip. Returns true when the test may run.
 *
 * @example test('memory limit', (t) => { if (!requireRoot(t, () => missingMemory())) return; … })
 */
export function requireRoot(
  t: TestContext,
  mechanismCheck: MechanismCheck = () => undefined,
): boolean {
  if (process.geteuid?.() !== 0) {
    t.skip('needs root');
    return false;
  }
  const missing = mechanismCheck();
  if (missing === undefined) return true;
  if (process.env.CI === 'true')
    throw new Error(`isolation mechanism missing under CI: ${missing}`);
  t.skip(`mechanism missing: ${missing}`);
  return false;
}
