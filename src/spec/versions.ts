import { z } from 'zod';
import { PetriError } from '../errors.ts';
import { fieldIssues, FunctionSpecSchema, type FieldIssue, type FunctionSpec } from './function.ts';

/** Alias names may not be all digits, so `name:3` is a version and `name:prod` an alias. */
export const AliasNameSchema = z
  .string()
  .regex(
    /^[a-zA-Z][a-zA-Z0-9_-]{0,62}$/,
    'must be 1–63 characters of letters, digits, "-" or "_", starting with a letter',
  );

export const VersionNumberSchema = z.number().int().min(1);

/** `PUT /v1/functions/{name}/aliases/{alias}`: a version, and optionally a canary with its share. */
export const AliasBodySchema = z
  .object({
    version: VersionNumberSchema,
    canary: z
      .object({ version: VersionNumberSchema, weight: z.number().min(0).max(1) })
      .strict()
      .optional(),
  })
  .strict()
  .refine((body) => body.canary === undefined || body.canary.version !== body.version, {
    message: 'must name another version than the alias itself',
    path: ['canary', 'version'],
  });

export type AliasBody = z.infer<typeof AliasBodySchema>;

/** What picks a version of a function: a number or an alias name (neither: the current one). */
export interface VersionSelector {
  version?: number;
  alias?: string;
}

/**
 * A qualifier as `name:qualifier` or the `x-petri-version` header carries
 * it: all digits is a version, anything else an alias name.
 */
export function parseQualifier(text: string): VersionSelector {
  if (/^[0-9]+$/.test(text)) {
    const version = Number(text);
    if (!Number.isSafeInteger(version) || version < 1)
      throw new PetriError('InvalidRequest', `version "${text}" must be a whole number from 1`);
    return { version };
  }
  const alias = AliasNameSchema.safeParse(text);
  if (!alias.success)
    throw new PetriError('InvalidRequest', `"${text}" is neither a version nor an alias name`, {
      issues: fieldIssues(alias.error).map((issue) => ({ ...issue, field: 'qualifier' })),
    });
  return { alias: text };
}

/** Spec fields a PATCH may not change: they decide what code runs and how it is built. */
const CODE_FIELDS = ['name', 'runtime', 'handler', 'command'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * JSON Merge Patch (RFC 7396): objects merge key by key, `null` removes a
 * key (its default applies again), anything else replaces. It recurses only
 * where the target holds an object, so its depth is the spec's, whatever
 * the patch's. Keys are defined, never assigned, so `__proto__` stays a key.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
      continue;
    }
    const before = Object.prototype.hasOwnProperty.call(result, key) ? result[key] : undefined;
    const merged =
      isPlainObject(before) && isPlainObject(value) ? mergePatch(before, value) : value;
    Object.defineProperty(result, key, {
      value: merged,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return result;
}

/**
 * `PATCH /v1/functions/{name}`: the current spec with a merge patch applied,
 * validated by the spec schema. A field that would change the code (name,
 * runtime, handler, command) or a `source` fails with `InvalidSpec`, as do
 * invalid values, every one named in `details.issues`.
 */
export function applyConfigPatch(current: FunctionSpec, patch: unknown): FunctionSpec {
  if (!isPlainObject(patch))
    throw new PetriError('InvalidSpec', 'a configuration patch must be a JSON object');
  const issues: FieldIssue[] = [];
  if (Object.prototype.hasOwnProperty.call(patch, 'source'))
    issues.push({ field: 'source', message: 'cannot change without a deploy (PUT)' });
  const merged = mergePatch(current, patch) as Record<string, unknown>;
  delete merged.source;
  for (const field of CODE_FIELDS) {
    if (JSON.stringify(merged[field]) !== JSON.stringify(current[field]))
      issues.push({ field, message: 'changes the code: deploy it with PUT instead' });
  }
  const parsed = FunctionSpecSchema.safeParse(merged);
  if (!parsed.success) issues.push(...fieldIssues(parsed.error));
  if (issues.length > 0 || !parsed.success) {
    const text = issues.map((i) => `${i.field} ${i.message}`).join('; ');
    throw new PetriError('InvalidSpec', `invalid configuration patch: ${text}`, { issues });
  }
  return parsed.data;
}
