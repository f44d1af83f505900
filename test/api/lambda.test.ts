import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { endToEndHeaders } from '../../src/api/hop-by-hop.ts';
import { lambdaEvent, lambdaResponse, type UrlRequest } from '../../src/api/lambda.ts';
import { urlParts } from '../../src/api/function-urls.ts';
import { PetriError } from '../../src/errors.ts';
import { parseFromInstance } from '../../src/runtime/index.ts';

const CONTEXT = { functionName: 'f', requestId: 'inv-1', now: Date.UTC(2020, 2, 12, 19, 3, 58) };

function req(overrides: Partial<UrlRequest>): UrlRequest {
  return {
    method: 'GET',
    rawPath: '/',
    rawQueryString: '',
    rawHeaders: ['Host', 'example.test'],
    body: Buffer.alloc(0),
    sourceIp: '10.0.0.1',
    protocol: 'HTTP/1.1',
    ...overrides,
  };
}

describe('lambdaEvent', () => {
  it('has the payload 2.0 shape, without body or query when there are none', () => {
    const event = lambdaEvent(req({}), CONTEXT);
    assert.equal(event.version, '2.0');
    assert.equal(event.requestContext.time, '12/Mar/2020:19:03:58 +0000');
    assert.equal(event.requestContext.requestId, 'inv-1');
    assert.equal(event.requestContext.domainName, 'example.test');
    assert.equal(event.body, undefined);
    assert.equal(event.queryStringParameters, undefined);
    assert.equal(event.cookies, undefined);
    assert.equal(event.isBase64Encoded, false);
  });

  it('joins repeated headers and query keys with commas and lifts cookies out', () => {
    const event = lambdaEvent(
      req({
        rawQueryString: 'a=1&a=2&b=%20x',
        rawHeaders: ['X-A', '1', 'x-a', '2', 'Cookie', 'p=1; q=2', 'cookie', 'r=3'],
      }),
      CONTEXT,
    );
    assert.deepEqual(event.headers, { 'x-a': '1,2' });
    assert.deepEqual(event.cookies, ['p=1', 'q=2', 'r=3']);
    assert.deepEqual(event.queryStringParameters, { a: '1,2', b: ' x' });
  });

  it('passes text bodies as text and every other body as base64', () => {
    const bytes = Buffer.from([0, 255, 10]);
    for (const [type, text] of [
      ['application/json', true],
      ['text/html; charset=utf-8', true],
      ['application/vnd.api+json', true],
      ['application/x-www-form-urlencoded', true],
      ['application/octet-stream', false],
      ['image/png', false],
      [undefined, false],
    ] as const) {
      const rawHeaders = type ? ['content-type', type] : [];
      const event = lambdaEvent(req({ method: 'POST', rawHeaders, body: bytes }), CONTEXT);
      assert.equal(event.isBase64Encoded, !text, String(type));
      assert.equal(event.body, bytes.toString(text ? 'utf8' : 'base64'), String(type));
    }
  });
});

describe('lambdaResponse', () => {
  it('takes a value with statusCode as a structured response', () => {
    const response = lambdaResponse({
      statusCode: 201,
      headers: { 'x-n': 3, 'x-b': true, connection: 'close', 'content-length': '999' },
      multiValueHeaders: { vary: ['a', 'b'] },
      cookies: ['s=1', 't=2'],
      body: Buffer.from('hi').toString('base64'),
      isBase64Encoded: true,
    });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(response.headers, [
      'x-n',
      '3',
      'x-b',
      'true',
      'vary',
      'a',
      'vary',
      'b',
      'set-cookie',
      's=1',
      'set-cookie',
      't=2',
    ]);
    assert.equal(response.body.toString(), 'hi');
  });

  it('answers any other value as Lambda does', () => {
    assert.deepEqual(lambdaResponse({ a: 1 }), {
      statusCode: 200,
      headers: ['content-type', 'application/json'],
      body: Buffer.from('{"a":1}'),
    });
    assert.equal(lambdaResponse('plain').body.toString(), 'plain');
    assert.equal(lambdaResponse(undefined).body.toString(), 'null');
    assert.equal(lambdaResponse([1]).body.toString(), '[1]');
    const bytes = lambdaResponse(Buffer.from([1, 2]));
    assert.deepEqual(bytes.headers, ['content-type', 'application/octet-stream']);
    assert.deepEqual(bytes.body, Buffer.from([1, 2]));
  });

  it('refuses what HTTP cannot carry with BadResponse', () => {
    for (const value of [
      { statusCode: 99 },
      { statusCode: 200.5 },
      { statusCode: '200' },
      { statusCode: 200, body: { not: 'a string' } },
      { statusCode: 200, headers: { 'x-a': 'line\r\nbreak' } },
      { statusCode: 200, headers: { 'bad name': 'x' } },
      { statusCode: 200, body: '***', isBase64Encoded: true },
    ]) {
      assert.throws(
        () => lambdaResponse(value),
        (err: unknown) => err instanceof PetriError && err.code === 'BadResponse',
        JSON.stringify(value),
      );
    }
  });
});

describe('endToEndHeaders', () => {
  it('drops hop-by-hop headers, those Connection names, and the ones asked for', () => {
    const kept = endToEndHeaders(
      [
        'Connection',
        'keep-alive, X-Private',
        'Keep-Alive',
        'timeout=5',
        'X-Private',
        's',
        'Transfer-Encoding',
        'chunked',
        'TE',
        'trailers',
        'Upgrade',
        'h2c',
        'Authorization',
        'Bearer t',
        'Set-Cookie',
        'a=1',
        'Set-Cookie',
        'b=2',
      ],
      new Set(['authorization']),
    );
    assert.deepEqual(kept, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
  });
});

describe('urlParts', () => {
  it('cuts the name and keeps the rest as sent', () => {
    assert.deepEqual(urlParts('/fn/f'), { name: 'f', path: '/', query: '' });
    assert.deepEqual(urlParts('/fn/f?x=1'), { name: 'f', path: '/', query: 'x=1' });
    assert.deepEqual(urlParts('/fn/%66/a%2Fb/?q=%20'), {
      name: 'f',
      path: '/a%2Fb/',
      query: 'q=%20',
    });
    assert.equal(urlParts('/fn/%zz/'), undefined);
  });
});

describe('result frames', () => {
  it('carry text and base64 values, checked', () => {
    const base = { type: 'result', id: 'i' };
    assert.deepEqual(parseFromInstance({ ...base, value: 'AAE=', encoding: 'base64' }), {
      ...base,
      value: 'AAE=',
      encoding: 'base64',
    });
    assert.ok(parseFromInstance({ ...base, value: 'any', encoding: 'text' }));
    assert.throws(() => parseFromInstance({ ...base, value: '**', encoding: 'base64' }));
    assert.throws(() => parseFromInstance({ ...base, value: 5, encoding: 'text' }));
    assert.throws(() => parseFromInstance({ ...base, value: 'x', encoding: 'hex' }));
    assert.throws(() => parseFromInstance({ type: 'ready', port: 70000 }));
  });
});
