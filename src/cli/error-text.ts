import { PetriError } from '../errors.ts';
import { ApiError, isRecord, NodeUnreachableError } from './client.ts';

/** The failure report: one headline, then InvalidSpec issues one per line or other details. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError || err instanceof PetriError) {
    return `Error ${err.code}: ${err.message}\n${detailsText(err.details)}`;
  }
  if (err instanceof NodeUnreachableError) return `Error: ${err.message}\n`;
  return `Error: ${err instanceof Error ? err.message : String(err)}\n`;
}

function detailsText(details: unknown): string {
  if (details === undefined || details === null) return '';
  if (!isRecord(details)) return `  details: ${JSON.stringify(details)}\n`;
  const issues = details.issues;
  if (Array.isArray(issues)) {
    return issues
      .map((issue: unknown) =>
        isRecord(issue) ? `  ${String(issue.field)}: ${String(issue.message)}\n` : '',
      )
      .join('');
  }
  // One line per field; strings (a handler's stack) keep their own line breaks.
  return Object.entries(details)
    .map(([key, value]) => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      return `  ${key}: ${text.replace(/\n/g, '\n    ')}\n`;
    })
    .join('');
}
