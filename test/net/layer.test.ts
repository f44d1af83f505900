import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { networkLayer } from '../../src/net/index.ts';
import type { SandboxSpec } from '../../src/sandbox/types.ts';
import { describeLayerCases } from '../sandbox/layer.case.ts';
import { netLayerRef, netLayerSubject } from './layer-subject.ts';

const spec = {
  instanceId: 'i1',
  network: { inbound: false, egress: true },
  resources: { bandwidthMbit: 50, burstBytes: 262144 },
} as SandboxSpec;

test('switched off in config, the layer reports why and wraps nothing', async () => {
  const warnings: string[] = [];
  const config = parseConfig({ isolation: { network: 'off' } });
  const layer = networkLayer(config, 'toff', (m) => warnings.push(m));
  assert.deepEqual(
    layer.mechanisms().map((m) => [m.name, m.active, m.reason]),
    [
      ['netns', false, 'off in config'],
      ['shaping', false, 'needs netns (off in config)'],
      ['firewall', false, 'needs netns (off in config)'],
      ['egress-nat', false, 'needs netns (off in config)'],
    ],
  );
  assert.deepEqual(warnings, [], 'a mechanism switched off on purpose is not a warning');
  const instance = await layer.prepare(spec);
  assert.deepEqual(instance.wrap(['node', 'host.js']), ['node', 'host.js']);
  assert.equal(instance.address, undefined);
  await instance.destroy();
  await layer.reconcile();
  await layer.close();
  await assert.rejects(layer.prepare(spec), /closed/);
});

test('rejects tags and bridge names that could break the batch text', () => {
  assert.throws(() => networkLayer(parseConfig({}), 'Bad-Tag', () => undefined), /node tag/);
  const config = parseConfig({ network: { bridge: 'br 0\nlink' } });
  assert.throws(() => networkLayer(config, 'ok', () => undefined), /interface name/);
});

describeLayerCases(netLayerSubject, { isolated: netLayerRef });
