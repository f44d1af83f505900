import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CODES, PetriError, isErrorCode, toPetriError } from '../src/errors.ts';

function documentedCodes(): Map<string, { status: number; meaning: string }> {
  const text = fs.readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map<string, { status: number; meaning: string }>();
  // Rows of the table, whatever padding a formatter adds: | `Code` | 404 | Meaning |
  for (const match of text.matchAll(/^\|\s*`(\w+)`\s*\|\s*(\d{3})\s*\|\s*(.+?)\s*\|$/gm)) {
    rows.set(match[1], { status: Number(match[2]), meaning: match[3] });
  }
  return rows;
}

describe('error registry', () => {
  it('docs/errors.md lists exactly the registered codes with the same status and meaning', () => {
    const documented = documentedCodes();
    assert.deepEqual([...documented.keys()].sort(), Object.keys(ERROR_CODES).sort());
    for (const [code, entry] of Object.entries(ERROR_CODES)) {
      assert.deepEqual(
        documented.get(code),
        { status: entry.status, meaning: entry.meaning },
        code,
      );
    }
  });

  it('gives every code an HTTP error status', () => {
    for (const [code, entry] of Object.entries(ERROR_CODES)) {
      assert.ok(entry.status >= 400 && entry.status < 600, code);
    }
  });

  it('turns a PetriError into the API body with its registered status', () => {
    const error = new PetriError('FunctionNotFound', 'no function named "x"', { name: 'x' });
    assert.equal(error.status, 404);
    assert.deepEqual(error.toBody(), {
      error: { code: 'FunctionNotFound', message: 'no function named "x"', details: { name: 'x' } },
    });
  });

  it('wraps unknown throwables as Internal and keeps registered codes', () => {
    assert.equal(toPetriError(new Error('x')).code, 'Internal');
    const known = new PetriError('Timeout', 't');
    assert.equal(toPetriError(known), known);
    assert.ok(isErrorCode('QueueFull'));
    assert.ok(!isErrorCode('NotACode'));
  });
});
