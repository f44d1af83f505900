import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/index.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';

let fake: FakeNode;
let app: FastifyInstance;
const code = handlerDir();

before(async () => {
  fake = await fakeNode();
  app = buildApp(fake.node, { payloadLimitBytes: 4096 });
  await app.inject({ method: 'PUT', url: '/v1/functions/web', payload: deployBody(code) });
  await app.inject({
    method: 'PUT',
    url: '/v1/functions/web',
    payload: deployBody(code, { memoryMb: 192 }),
  });
});
after(async () => {
  await app.close();
  await fake.close();
});

function invoke(query = '', headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: `/v1/functions/web/invoke${query}`,
    payload: { hi: 1 },
    headers,
  });
}

describe('versions and aliases over HTTP', () => {
  it('picks a version or an alias on a function URL with /fn/NAME:QUALIFIER', async () => {
    const current = await app.inject({ method: 'GET', url: '/fn/web/x' });
    assert.equal(current.statusCode, 200);
    assert.equal(current.headers['x-petri-version'], '2');
    const first = await app.inject({ method: 'GET', url: '/fn/web:1/x?y=1' });
    assert.equal(first.statusCode, 200);
    assert.equal(first.headers['x-petri-version'], '1');
    assert.equal(first.json().rawPath, '/x');
    const missing = await app.inject({ method: 'GET', url: '/fn/web:nope/x' });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, 'AliasNotFound');
  });

  it('lists versions and invokes one by ?version, x-petri-version or the current one', async () => {
    const listed = await app.inject('/v1/functions/web/versions');
    assert.equal(listed.statusCode, 200);
    assert.deepEqual(
      listed
        .json()
        .versions.map((v: { version: number; current: boolean }) => [v.version, v.current]),
      [
        [1, false],
        [2, true],
      ],
    );
    const current = await invoke();
    assert.equal(current.statusCode, 200);
    assert.equal(current.headers['x-petri-version'], '2');
    assert.deepEqual(current.json(), { hi: 1 });
    assert.equal((await invoke('?version=1')).headers['x-petri-version'], '1');
    assert.equal((await invoke('', { 'x-petri-version': '1' })).headers['x-petri-version'], '1');
    const missing = await invoke('?version=7');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, 'VersionNotFound');
    for (const query of ['?version=0', '?version=x', '?version=1&alias=a', '?alias=12']) {
      const bad = await invoke(query);
      assert.equal(bad.statusCode, 400, query);
      assert.equal(bad.json().error.code, 'InvalidRequest', query);
    }
    const both = await invoke('?version=1', { 'x-petri-version': '2' });
    assert.equal(both.json().error.code, 'InvalidRequest');
  });

  it('puts, gets, lists, invokes through and deletes an alias', async () => {
    const put = (body: unknown) =>
      app.inject({ method: 'PUT', url: '/v1/functions/web/aliases/prod', payload: body as object });
    const created = await put({ version: 1, canary: { version: 2, weight: 0.5 } });
    assert.equal(created.statusCode, 201);
    assert.deepEqual(
      { ...(created.json() as object), createdAt: 0, updatedAt: 0 },
      {
        name: 'prod',
        functionName: 'web',
        version: 1,
        canary: { version: 2, weight: 0.5 },
        createdAt: 0,
        updatedAt: 0,
      },
    );
    const versions = new Set<string>();
    for (let i = 0; i < 4; i += 1)
      versions.add(String((await invoke('?alias=prod')).headers['x-petri-version']));
    assert.deepEqual([...versions].sort(), ['1', '2']);
    assert.equal((await put({ version: 2 })).statusCode, 200);
    assert.equal((await invoke('', { 'x-petri-version': 'prod' })).headers['x-petri-version'], '2');
    const async = await invoke('?alias=prod&mode=async');
    assert.equal(async.statusCode, 202);
    assert.equal(async.json().version, 2);
    assert.equal((await app.inject('/v1/functions/web/aliases/prod')).json().version, 2);
    assert.deepEqual(
      (await app.inject('/v1/functions/web/aliases'))
        .json()
        .aliases.map((a: { name: string }) => a.name),
      ['prod'],
    );
    const bad = await put({ version: 'one' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.details.issues[0].field, 'version');
    const gone = await put({ version: 9 });
    assert.equal(gone.json().error.code, 'VersionNotFound');
    const removed = await app.inject({ method: 'DELETE', url: '/v1/functions/web/aliases/prod' });
    assert.deepEqual(removed.json(), { name: 'prod', functionName: 'web', deleted: true });
    const after = await app.inject('/v1/functions/web/aliases/prod');
    assert.equal(after.statusCode, 404);
    assert.equal(after.json().error.code, 'AliasNotFound');
    assert.equal((await invoke('?alias=prod')).json().error.code, 'AliasNotFound');
  });

  it('PATCH makes a config-only version; bad fields are InvalidSpec', async () => {
    const patched = await app.inject({
      method: 'PATCH',
      url: '/v1/functions/web',
      payload: { timeoutMs: 5000, concurrency: 4 },
    });
    assert.equal(patched.statusCode, 200);
    assert.equal(patched.json().version, 3);
    assert.equal(patched.json().spec.timeoutMs, 5000);
    const versions = (await app.inject('/v1/functions/web/versions')).json().versions;
    assert.equal(versions.at(-1).codeDigest, versions.at(-2).codeDigest);
    const bad = await app.inject({
      method: 'PATCH',
      url: '/v1/functions/web',
      payload: { timeoutMs: -1, handler: 'other.handler' },
    });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'InvalidSpec');
    assert.deepEqual(
      bad
        .json()
        .error.details.issues.map((i: { field: string }) => i.field)
        .sort(),
      ['handler', 'timeoutMs'],
    );
    const missing = await app.inject({ method: 'PATCH', url: '/v1/functions/nope', payload: {} });
    assert.equal(missing.json().error.code, 'FunctionNotFound');
  });
});
