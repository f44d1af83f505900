import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError, PetriClient } from '../../src/cli/client.ts';
import { formatAge, formatBytes, formatDuration, keyValues, table } from '../../src/cli/format.ts';

describe('format', () => {
  it('durations pick a unit people read at a glance', () => {
    assert.equal(formatDuration(undefined), '-');
    assert.equal(formatDuration(0.25), '0.3 ms');
    assert.equal(formatDuration(850), '850 ms');
    assert.equal(formatDuration(1250), '1.25 s');
    assert.equal(formatDuration(184_000), '3m 04s');
    assert.equal(formatDuration(2 * 3600_000 + 5 * 60_000), '2h 05m');
    assert.equal(formatDuration(3 * 86400_000 + 4 * 3600_000), '3d 04h');
  });

  it('bytes use binary units', () => {
    assert.equal(formatBytes(undefined), '-');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(48 * 1024 * 1024), '48 MiB');
    assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
  });

  it('ages are relative to now', () => {
    assert.equal(formatAge(1000, 13_000), '12s ago');
    assert.equal(formatAge(0, 5 * 60_000), '5m ago');
    assert.equal(formatAge(0, 50 * 3600_000), '2d ago');
  });

  it('tables are borderless, aligned and show missing cells as "-"', () => {
    assert.equal(
      table(
        ['NAME', 'N'],
        [
          ['hello', 1],
          ['a', undefined],
        ],
      ),
      'NAME   N\nhello  1\na      -',
    );
  });

  it('key/values align their values', () => {
    assert.equal(
      keyValues([
        ['a', 1],
        ['long', 'x'],
      ]),
      'a:    1\nlong: x',
    );
  });
});

describe('PetriClient', () => {
  it('treats only loopback names as local (they can read a folder by path)', () => {
    for (const url of ['http://127.0.0.1:8080', 'http://localhost:1', 'http://[::1]:8080/']) {
      assert.equal(new PetriClient(url).isLocal(), true, url);
    }
    for (const url of ['http://10.0.0.5:8080', 'https://petri.example.com']) {
      assert.equal(new PetriClient(url).isLocal(), false, url);
    }
  });

  it('rejects a URL that is not http(s) before any request', () => {
    assert.throws(
      () => new PetriClient('not a url'),
      (err: unknown) => {
        return err instanceof ApiError && err.code === 'InvalidRequest';
      },
    );
    assert.throws(() => new PetriClient('ftp://x'), ApiError);
  });
});
