import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/root.ts';
import { inTestNamespace, missingNetMechanism, randomTag } from '../helpers/test-namespace.ts';

const SCENARIOS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scenarios.ts');

/** Every scenario needs the network mechanisms; the shaping one measures with iperf3 too. */
const missingMechanism = () => missingNetMechanism([['iperf3', 'iperf3', ['--version']]]);

/** Runs one scenario of scenarios.ts inside a fresh test namespace, with a fresh node tag. */
function inScenario(t: TestContext, scenario: string): Promise<Record<string, unknown>> {
  const tag = randomTag();
  return inTestNamespace(t, [tag], SCENARIOS, [scenario, tag]);
}

test('instances get an address; reach neither the node, each other nor private ranges; only egress routes out', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inScenario(t, 'topology');
});

test('a restarted node removes a crashed run’s namespaces, links and rules', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inScenario(t, 'crash');
});

test('shaping holds both ways at 50 Mbit/s and cannot be removed from inside', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inScenario(t, 'shaping');
});

test('prepare from the pool vs without (median of 20)', async (t) => {
  if (!requireRoot(t, missingMechanism)) return;
  await inScenario(t, 'measure');
});
