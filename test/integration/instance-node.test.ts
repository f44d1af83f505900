import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { checkNodeBinary } from '../../src/runtime/index.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * A node whose instances run another Node binary than the daemon
 * (config runtime.nodeBinary). The system Node, when there is one of another
 * version, shows that the instance host runs on it; a wrapper script around
 * it, kept under /tmp (hidden inside bwrap unless bound back), shows that
 * the configured file is the one instances start.
 */
const SYSTEM_NODE = '/usr/bin/node';

async function otherNode(): Promise<{ binary: string; version: string }> {
  const system = await checkNodeBinary(SYSTEM_NODE).catch(() => undefined);
  return system && system.version !== process.version
    ? system
    : { binary: process.execPath, version: process.version };
}

const dir = tempDir('petri-instance-node-');
let daemon: Daemon;
let target: { binary: string; version: string };
let wrapper: string;

async function call(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, body: text ? (JSON.parse(text) as unknown) : undefined };
}

before(async () => {
  target = await otherNode();
  wrapper = path.join(dir, 'instance-node');
  fs.writeFileSync(
    wrapper,
    `#!/bin/sh\nexport WRAPPED_BY=petri-test\nexec "${target.binary}" "$@"\n`,
  );
  fs.chmodSync(wrapper, 0o755);
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ runtime: { nodeBinary: wrapper } }));
  daemon = await spawnDaemon({ stateDir: path.join(dir, 'state'), configFile });
});

after(async () => {
  await daemon?.close();
});

describe('instances on the configured Node binary', () => {
  it('reports the daemon and instance Node versions in GET /v1/node', async () => {
    const node = (await call('GET', '/v1/node')).body as Record<string, unknown>;
    assert.equal(node.nodeVersion, process.version);
    assert.equal(node.instanceNodeBinary, wrapper);
    assert.equal(node.instanceNodeVersion, target.version);
  });

  it('runs the instance host and the handler on that binary', async () => {
    const code = path.join(dir, 'fn');
    fs.mkdirSync(code);
    fs.writeFileSync(
      path.join(code, 'index.mjs'),
      'export async function handler() { return { version: process.version, wrapped: process.env.WRAPPED_BY }; }\n',
    );
    const deployed = await call('PUT', '/v1/functions/which-node', {
      runtime: 'node',
      handler: 'index.handler',
      source: { path: code },
    });
    assert.equal(deployed.status, 201, JSON.stringify(deployed.body));
    const reply = await call('POST', '/v1/functions/which-node/invoke', {});
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.deepEqual(reply.body, { version: target.version, wrapped: 'petri-test' });
  });
});

describe('a bad runtime.nodeBinary', () => {
  it('stops `petri serve` with InvalidRequest naming the field', async () => {
    const configFile = path.join(dir, 'bad.json');
    fs.writeFileSync(configFile, JSON.stringify({ runtime: { nodeBinary: '/nonexistent/node' } }));
    await assert.rejects(
      spawnDaemon({ stateDir: path.join(dir, 'bad-state'), configFile, loopback: true }),
      /Error InvalidRequest: config runtime\.nodeBinary "\/nonexistent\/node" does not exist\n {2}runtime\.nodeBinary: does not exist/,
    );
  });
});
