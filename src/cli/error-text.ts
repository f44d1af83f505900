import { PetriError } from '../errors.ts';
import { ApiError, isRecord, NodeUnreachableError, type ErrorInfo } from './client.ts';

/** A failure as `--json` prints it: the node's error body, plus the invocation it hit. */
export interface FailureJson {
  error: ErrorInfo;
  /** Set when the node said which invocation failed (x-petri-invocation-id). */
  invocationId?: string;
}

/** The failure report: one headline, then InvalidSpec issues one per line or other details. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError || err instanceof PetriError) {
    return `Error ${err.code}: ${err.message}\n${detailsText(err.details)}`;
  }
  if (err instanceof NodeUnreachableError) return `Error: ${err.message}\n`;
  return `Error: ${err instanceof Error ? err.message : String(err)}\n`;
}

/** The failure in the API's error shape, so a script reads CLI and node errors alike. */
export function failureJson(err: unknown): FailureJson {
  const error = errorInfo(err);
  const invocationId = err instanceof ApiError ? err.invocationId : undefined;
  return invocationId === undefined ? { error } : { error, invocationId };
}

function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof ApiError || err instanceof PetriError) {
    const { code, message, details } = err;
    return details === undefined ? { code, message } : { code, message, details };
  }
  // Not a registry code: the node never answered, so no code came from it.
  if (err instanceof NodeUnreachableError) return { code: 'NodeUnreachable', message: err.message };
  return { code: 'Internal', message: err instanceof Error ? err.message : String(err) };
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
