import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { PetriError } from '../errors.ts';

/** Where a malformed row is, and why. */
export interface RowProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

/** Counts of rows skipped under `--lenient`, with the first few problems as examples. */
export interface MalformedRows {
  count: number;
  examples: RowProblem[];
}

export function emptyMalformed(): MalformedRows {
  return { count: 0, examples: [] };
}

/** Thrown inside a row handler to reject the row; `column` is 1-based. */
export class RowError extends Error {
  constructor(
    readonly column: number,
    message: string,
  ) {
    super(message);
  }
}

export function problemError(problem: RowProblem): PetriError {
  return new PetriError(
    'InvalidRequest',
    `${problem.file}:${problem.line}:${problem.column}: ${problem.message}`,
    problem,
  );
}

export interface CsvOptions {
  /** Skip and count malformed rows instead of failing on the first one. */
  lenient: boolean;
  malformed: MalformedRows;
}

/**
 * Streams a simple CSV file (the Azure traces have no quoting) and calls
 * `onRow` with each data row's fields. The header is checked by `onHeader`.
 * A RowError from either becomes an InvalidRequest naming file, line, column.
 */
export async function readCsv(
  file: string,
  onHeader: (fields: string[]) => void,
  onRow: (fields: string[], line: number) => void,
  options: CsvOptions,
): Promise<void> {
  const name = path.basename(file);
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let lineNo = 0;
  let headerSeen = false;
  let width = 0;
  for await (const raw of lines) {
    lineNo++;
    const line = raw.trimEnd();
    if (line === '') continue;
    const fields = line.split(',');
    try {
      if (!headerSeen) {
        headerSeen = true;
        width = fields.length;
        onHeader(fields);
        continue;
      }
      if (fields.length !== width)
        throw new RowError(
          Math.min(fields.length, width) + 1,
          `expected ${width} columns, found ${fields.length}`,
        );
      onRow(fields, lineNo);
    } catch (err) {
      if (!(err instanceof RowError)) throw err;
      const problem = { file: name, line: lineNo, column: err.column, message: err.message };
      // A bad header makes every row meaningless: never lenient about it.
      if (!options.lenient || lineNo === 1) throw problemError(problem);
      options.malformed.count++;
      if (options.malformed.examples.length < 10) options.malformed.examples.push(problem);
    }
  }
  if (!headerSeen)
    throw problemError({ file: name, line: 1, column: 1, message: 'file is empty (no header)' });
}

/** Checks that `fields` start with `expected` (the fixed leading columns). */
export function expectHeader(fields: string[], expected: readonly string[]): void {
  expected.forEach((name, i) => {
    if (fields[i]?.trim() !== name)
      throw new RowError(i + 1, `expected header column "${name}", found "${fields[i] ?? ''}"`);
  });
}

/** Parses a non-negative finite number in column `index` (0-based). */
export function numberAt(fields: string[], index: number, header: readonly string[]): number {
  const text = fields[index].trim();
  const value = Number(text);
  if (text === '' || !Number.isFinite(value) || value < 0)
    throw new RowError(
      index + 1,
      `column "${header[index] ?? index + 1}": expected a non-negative number, found "${text}"`,
    );
  return value;
}

/** Parses a non-empty identifier in column `index` (0-based). */
export function textAt(fields: string[], index: number, header: readonly string[]): string {
  const text = fields[index].trim();
  if (text === '')
    throw new RowError(index + 1, `column "${header[index] ?? index + 1}": empty value`);
  return text;
}
