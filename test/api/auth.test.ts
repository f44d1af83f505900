import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/index.ts';
import { resolveApiToken, TOKEN_FILE } from '../../src/boot/index.ts';
import { cliToken } from '../../src/cli/verb.ts';
import { parseConfig } from '../../src/config.ts';
import { fakeNode, type FakeNode } from '../helpers/node.ts';

const TOKEN = 'a-token-of-some-length-0123456789';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-auth-'));
let fake: FakeNode;
let app: FastifyInstance;
let openMetrics: FastifyInstance;

before(async () => {
  fake = await fakeNode();
  app = buildApp(fake.node, { payloadLimitBytes: 1024, token: TOKEN });
  openMetrics = buildApp(fake.node, { payloadLimitBytes: 1024, token: TOKEN, publicMetrics: true });
});
after(async () => {
  await app.close();
  await openMetrics.close();
  await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('API authentication', () => {
  it('refuses every /v1 route without the token, with Unauthorized and a challenge', async () => {
    for (const [method, url] of [
      ['GET', '/v1/node'],
      ['GET', '/v1/functions'],
      ['PUT', '/v1/functions/x'],
      ['POST', '/v1/functions/x/invoke'],
      ['GET', '/v1/invocations?limit=1'],
    ] as const) {
      const response = await app.inject({ method, url, payload: {} });
      assert.equal(response.statusCode, 401, `${method} ${url}`);
      assert.equal(response.json().error.code, 'Unauthorized');
      assert.match(String(response.headers['www-authenticate']), /^Bearer/);
    }
  });

  it('refuses a wrong token, a token of another length and another scheme', async () => {
    for (const authorization of [
      `Bearer ${TOKEN.slice(0, -1)}x`,
      `Bearer ${TOKEN}x`,
      `Basic ${TOKEN}`,
      TOKEN,
    ]) {
      const response = await app.inject({ url: '/v1/node', headers: { authorization } });
      assert.equal(response.statusCode, 401, authorization);
    }
  });

  it('serves /v1 with the token and keeps /healthz open', async () => {
    const ok = await app.inject({ url: '/v1/node', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.statusCode, 200);
    assert.equal((await app.inject('/healthz')).statusCode, 200);
  });

  it('opens /metrics to loopback only, unless configured public', async () => {
    const local = await app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' });
    assert.equal(local.statusCode, 200);
    const remote = await app.inject({ url: '/metrics', remoteAddress: '10.213.0.5' });
    assert.equal(remote.statusCode, 401);
    const remoteWithToken = await app.inject({
      url: '/metrics',
      remoteAddress: '10.213.0.5',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(remoteWithToken.statusCode, 200);
    const open = await openMetrics.inject({ url: '/metrics', remoteAddress: '10.213.0.5' });
    assert.equal(open.statusCode, 200);
  });
});

describe('the API token', () => {
  it('is made once, random, in <stateDir>/api-token with mode 0600, and reused', async () => {
    const stateDir = path.join(dir, 'made');
    const config = parseConfig({ stateDir });
    const first = await resolveApiToken(config, {});
    const file = path.join(stateDir, TOKEN_FILE);
    assert.equal(first.source, 'file');
    assert.ok(first.token.length >= 32);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal((await resolveApiToken(config, {})).token, first.token);
    const other = await resolveApiToken(parseConfig({ stateDir: path.join(dir, 'other') }), {});
    assert.notEqual(other.token, first.token);
  });

  it('comes from PETRI_TOKEN first, then the config', async () => {
    const config = parseConfig({ stateDir: path.join(dir, 'set'), auth: { token: TOKEN } });
    assert.deepEqual(await resolveApiToken(config, { PETRI_TOKEN: 'from-the-environment-0001' }), {
      token: 'from-the-environment-0001',
      source: 'env',
    });
    assert.deepEqual(await resolveApiToken(config, {}), { token: TOKEN, source: 'config' });
    assert.equal(fs.existsSync(path.join(dir, 'set')), false, 'no token file was made');
    await assert.rejects(resolveApiToken(config, { PETRI_TOKEN: 'short' }), {
      code: 'InvalidConfig',
    });
  });

  it('must be set to listen beyond loopback', async () => {
    const stateDir = path.join(dir, 'wide');
    await assert.rejects(resolveApiToken(parseConfig({ stateDir, host: '0.0.0.0' }), {}), {
      code: 'InvalidConfig',
      message: /beyond loopback/,
    });
    assert.equal(fs.existsSync(stateDir), false);
    const given = await resolveApiToken(parseConfig({ stateDir, host: '0.0.0.0' }), {
      PETRI_TOKEN: TOKEN,
    });
    assert.equal(given.token, TOKEN);
  });

  it('is found by the CLI in the state dir unless given', async () => {
    const stateDir = path.join(dir, 'cli');
    const { token } = await resolveApiToken(parseConfig({ stateDir }), {});
    assert.equal(cliToken(undefined, { PETRI_STATE_DIR: stateDir }), token);
    assert.equal(cliToken('explicit-token', { PETRI_STATE_DIR: stateDir }), 'explicit-token');
    assert.equal(cliToken(undefined, { PETRI_STATE_DIR: path.join(dir, 'none') }), undefined);
  });

  it('petri serve refuses a non-loopback address without a token and makes nothing', async () => {
    const stateDir = path.join(dir, 'serve');
    const main = path.resolve(import.meta.dirname, '../../src/cli/main.ts');
    const env = { ...process.env, PETRI_TOKEN: '' };
    const result = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        main,
        'serve',
        '--host',
        '0.0.0.0',
        '--port',
        '0',
        '--state-dir',
        stateDir,
      ],
      { timeout: 30_000, env },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
    );
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^Error InvalidConfig: listening on 0\.0\.0\.0 .*needs an API token/m,
    );
    assert.equal(fs.existsSync(stateDir), false);
  });
});
