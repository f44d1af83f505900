import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/index.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';

let fake: FakeNode;
let app: FastifyInstance;
const code = handlerDir();

before(async () => {
  fake = await fakeNode();
  app = buildApp(fake.node, { payloadLimitBytes: 1024 });
});
after(async () => {
  await app.close();
  await fake.close();
});

function deploy(name: string, spec: Record<string, unknown> = {}) {
  return app.inject({
    method: 'PUT',
    url: `/v1/functions/${name}`,
    payload: deployBody(code, spec),
  });
}

describe('HTTP API v1', () => {
  it('answers health and node facts', async () => {
    assert.deepEqual((await app.inject('/healthz')).json(), { status: 'ok' });
    const node = (await app.inject('/v1/node')).json();
    assert.equal(node.sandboxDriver, 'fake');
    assert.ok(node.cores >= 1);
    assert.deepEqual(Object.keys(node.instances).sort(), [
      'busy',
      'idle',
      'paused',
      'starting',
      'stopping',
    ]);
  });

  it('answers an over-long function name with a registered error, not the framework body', async () => {
    const long = 'a'.repeat(200);
    for (const [method, url] of [
      ['PUT', `/v1/functions/${long}`],
      ['GET', `/v1/functions/${long}`],
      ['POST', `/v1/functions/${long}/invoke`],
    ] as const) {
      const response = await app.inject({ method, url, payload: {} });
      assert.equal(response.statusCode, 400, url);
      const body = response.json();
      assert.deepEqual(Object.keys(body), ['error']);
      assert.equal(body.error.code, 'InvalidRequest');
    }
    const name64 = await deploy('b'.repeat(64));
    assert.equal(name64.statusCode, 400);
    assert.equal(name64.json().error.code, 'InvalidSpec');
  });

  it('creates with 201, makes a new version with 200, lists and gets', async () => {
    const created = await deploy('crud');
    assert.equal(created.statusCode, 201);
    assert.equal(created.json().version, 1);
    const again = await deploy('crud', { memoryMb: 256 });
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().version, 2);
    const same = await deploy('crud', { memoryMb: 256 });
    assert.equal(same.statusCode, 200);
    assert.equal(same.json().version, 2, 'the same spec and code make no new version');
    const one = (await app.inject('/v1/functions/crud')).json();
    assert.equal(one.spec.memoryMb, 256);
    const names = (await app.inject('/v1/functions'))
      .json()
      .functions.map((f: { name: string }) => f.name);
    assert.ok(names.includes('crud'));
    const removed = await app.inject({ method: 'DELETE', url: '/v1/functions/crud' });
    assert.deepEqual(removed.json(), { name: 'crud', deleted: true });
    assert.equal((await app.inject('/v1/functions/crud')).json().error.code, 'FunctionNotFound');
  });

  it('rejects an invalid spec with InvalidSpec listing every invalid field', async () => {
    const response = await app.inject({
      method: 'PUT',
      url: '/v1/functions/bad',
      payload: {
        runtime: 'cobol',
        memoryMb: 1,
        timeoutMs: -5,
        extra: true,
        source: { path: code },
      },
    });
    assert.equal(response.statusCode, 400);
    const { error } = response.json();
    assert.equal(error.code, 'InvalidSpec');
    const fields = error.details.issues.map((i: { field: string }) => i.field).sort();
    assert.deepEqual(fields, ['(root)', 'memoryMb', 'runtime', 'timeoutMs']);
    assert.match(error.message, /unknown field\(s\) extra/);
  });

  it('requires a source and a command for exec functions', async () => {
    const response = await app.inject({
      method: 'PUT',
      url: '/v1/functions/nocmd',
      payload: { runtime: 'exec' },
    });
    const fields = response
      .json()
      .error.details.issues.map((i: { field: string }) => i.field)
      .sort();
    assert.deepEqual(fields, ['command', 'source']);
  });

  it('rejects spec fields that are not built yet, naming the field, and deploys nothing', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ snapshot: 'yes' }, 'snapshot', /expected boolean/],
      [
        { runtime: 'exec', command: ['true'], snapshot: true },
        'snapshot',
        /for the node runtime only/,
      ],
      [{ network: { inbound: 'all' } }, 'network.inbound', /invalid input/i],
      [{ keepAlive: { policy: 'adaptive' } }, 'keepAlive.policy', /must be one of "fixed"/],
      [
        { keepAlive: { policy: 'greedy-dual', ms: 1000 } },
        'keepAlive.ms',
        /does not apply to "greedy-dual"/,
      ],
    ];
    for (const [spec, field, message] of cases) {
      const response = await deploy('unbuilt', spec);
      assert.equal(response.statusCode, 400, JSON.stringify(spec));
      const { error } = response.json();
      assert.equal(error.code, 'InvalidSpec');
      assert.deepEqual(
        error.details.issues.map((i: { field: string }) => i.field),
        [field],
      );
      assert.match(error.message, message);
    }
    assert.equal((await app.inject('/v1/functions/unbuilt')).json().error.code, 'FunctionNotFound');
    // Their "off" values are still accepted, and are what a deployed spec shows.
    const off = await deploy('built', {
      snapshot: false,
      network: { inbound: false },
      keepAlive: { policy: 'fixed' },
    });
    assert.equal(off.statusCode, 201);
    assert.deepEqual(
      [off.json().spec.snapshot, off.json().spec.network.inbound, off.json().spec.keepAlive.policy],
      [false, false, 'fixed'],
    );
  });

  it('reports a bundling error at deploy time with the compiler message', async () => {
    const broken = handlerDir('export async function handler( {\n');
    const response = await app.inject({
      method: 'PUT',
      url: '/v1/functions/broken',
      payload: deployBody(broken),
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.code, 'InvalidSpec');
    assert.match(response.json().error.message, /bundling failed: .*index\.mjs:\d+:\d+: Expected/);
  });

  it('invokes synchronously with the result as body and x-petri headers', async () => {
    await deploy('sync');
    const response = await app.inject({
      method: 'POST',
      url: '/v1/functions/sync/invoke',
      payload: { a: [1, 2] },
    });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { a: [1, 2] });
    assert.equal(response.headers['x-petri-start'], 'cold');
    assert.ok(Number(response.headers['x-petri-duration-ms']) >= 0);
    const id = String(response.headers['x-petri-invocation-id']);
    await sleep(40);
    const record = (await app.inject(`/v1/invocations/${id}`)).json();
    assert.equal(record.status, 'succeeded');
    assert.equal(record.startPath, 'cold');
    assert.ok(record.timings.totalMs >= record.timings.executionMs);
  });

  it('accepts an empty body as an empty event', async () => {
    await deploy('empty');
    const response = await app.inject({ method: 'POST', url: '/v1/functions/empty/invoke' });
    assert.deepEqual(response.json(), {});
  });

  it('invokes asynchronously with 202 and a pollable record', async () => {
    await deploy('async');
    const accepted = await app.inject({
      method: 'POST',
      url: '/v1/functions/async/invoke?mode=async',
      payload: { sleepMs: 20 },
    });
    assert.equal(accepted.statusCode, 202);
    const { invocationId } = accepted.json();
    const early = (await app.inject(`/v1/invocations/${invocationId}`)).json();
    assert.ok(['queued', 'running'].includes(early.status));
    await sleep(80);
    const done = (await app.inject(`/v1/invocations/${invocationId}`)).json();
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(done.result, { sleepMs: 20 });
    const listed = (await app.inject('/v1/invocations?function=async&limit=5')).json();
    assert.equal(listed.invocations[0].id, invocationId);
  });

  it('maps bad input to registered codes and keeps serving', async () => {
    await deploy('errs');
    const notFound = await app.inject({
      method: 'POST',
      url: '/v1/functions/nope/invoke',
      payload: {},
    });
    assert.equal(notFound.statusCode, 404);
    assert.equal(notFound.json().error.code, 'FunctionNotFound');
    const malformed = await app.inject({
      method: 'POST',
      url: '/v1/functions/errs/invoke',
      payload: '{"a":',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(malformed.statusCode, 400);
    assert.equal(malformed.json().error.code, 'InvalidRequest');
    const large = await app.inject({
      method: 'POST',
      url: '/v1/functions/errs/invoke',
      payload: { x: 'y'.repeat(2000) },
    });
    assert.equal(large.statusCode, 413);
    assert.equal(large.json().error.code, 'PayloadTooLarge');
    const badQuery = await app.inject({
      method: 'POST',
      url: '/v1/functions/errs/invoke?mode=later',
      payload: {},
    });
    assert.equal(badQuery.json().error.code, 'InvalidRequest');
    const noInvocation = await app.inject('/v1/invocations/missing');
    assert.equal(noInvocation.json().error.code, 'InvocationNotFound');
    const noRoute = await app.inject('/v2/whatever');
    assert.equal(noRoute.json().error.code, 'RouteNotFound');
    const failed = await app.inject({
      method: 'POST',
      url: '/v1/functions/errs/invoke',
      payload: { fail: 'bad' },
    });
    assert.equal(failed.statusCode, 502);
    assert.equal(failed.json().error.code, 'HandlerError');
    assert.ok(failed.headers['x-petri-invocation-id']);
    const fine = await app.inject({
      method: 'POST',
      url: '/v1/functions/errs/invoke',
      payload: { ok: 1 },
    });
    assert.equal(fine.statusCode, 200);
  });

  it('serves function logs and Prometheus metrics', async () => {
    await deploy('logged');
    const response = await app.inject({
      method: 'POST',
      url: '/v1/functions/logged/invoke',
      payload: {},
    });
    const id = response.headers['x-petri-invocation-id'];
    const logs = (await app.inject(`/v1/functions/logged/logs?invocation=${id}`)).json().logs;
    assert.equal(logs.length, 1);
    assert.equal(logs[0].stream, 'stdout');
    const metrics = await app.inject('/metrics');
    assert.match(metrics.headers['content-type'] as string, /text\/plain/);
    assert.match(
      metrics.body,
      /petri_invocations_total\{function="logged",start="cold",outcome="success"\} 1/,
    );
    assert.match(
      metrics.body,
      /petri_invocation_duration_seconds_bucket\{function="logged",start="cold",le="\+Inf"\} 1/,
    );
    assert.match(
      metrics.body,
      /petri_invocation_duration_seconds_count\{function="logged",start="cold"\} 1/,
    );
    assert.match(metrics.body, /petri_queue_length\{function="logged"\} 0/);
    assert.match(metrics.body, /petri_instances\{state="idle"\}/);
    assert.match(metrics.body, /petri_memory_in_use_bytes \d+/);
  });
});

describe('methods and shed load', () => {
  it('answers a known path with a wrong method as 405 with Allow', async () => {
    const invoke = await app.inject({ method: 'GET', url: '/v1/functions/f/invoke?x=1' });
    assert.equal(invoke.statusCode, 405);
    assert.equal(invoke.headers.allow, 'POST');
    assert.equal(invoke.json().error.code, 'MethodNotAllowed');
    const node = await app.inject({ method: 'DELETE', url: '/v1/node' });
    assert.equal(node.statusCode, 405);
    assert.equal(node.headers.allow, 'GET, HEAD');
    const fn = await app.inject({ method: 'POST', url: '/v1/functions/f' });
    assert.equal(fn.headers.allow, 'DELETE, GET, HEAD, PATCH, PUT');
    assert.equal((await app.inject({ method: 'GET', url: '/v2/nothing' })).statusCode, 404);
  });
});
