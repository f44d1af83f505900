import { z } from 'zod';
import { MICROTASK_NAME, type BindMessage, type FromInstance } from './protocol.ts';

/**
 * What the daemon accepts from an instance: every frame is checked against
 * this before the daemon acts on it (an instance's frames are hostile
 * input). Text fields are not length-checked here; the daemon cuts them.
 * Not part of the instance host (which bundles only Node built-ins).
 */
const invocationId = z.string().min(1).max(128);

export const FromInstanceSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('ready'), port: z.number().int().min(1).max(65535).optional() }),
  z
    .strictObject({
      type: z.literal('result'),
      id: invocationId,
      value: z.unknown(),
      encoding: z.enum(['text', 'base64']).optional(),
    })
    .superRefine((frame, ctx) => {
      if (frame.encoding === undefined) return;
      const ok =
        typeof frame.value === 'string' &&
        (frame.encoding === 'text' || z.base64().safeParse(frame.value).success);
      const want = frame.encoding === 'text' ? 'a string' : 'a base64 string';
      if (!ok) ctx.addIssue({ code: 'custom', path: ['value'], message: `must be ${want}` });
    }),
  z.strictObject({
    type: z.literal('error'),
    id: invocationId,
    code: z.string().max(64),
    message: z.string(),
    stack: z.string().optional(),
  }),
  z.strictObject({
    type: z.literal('log'),
    id: invocationId.optional(),
    stream: z.enum(['stdout', 'stderr']),
    line: z.string(),
  }),
  z.strictObject({
    type: z.literal('microtask'),
    id: invocationId,
    name: z.string().regex(MICROTASK_NAME),
  }),
  z.strictObject({
    type: z.literal('init-error'),
    message: z.string(),
    stack: z.string().optional(),
  }),
]);

/** The message `value` is, or an Error naming the first thing wrong with it. */
export function parseFromInstance(value: unknown): FromInstance {
  const parsed = FromInstanceSchema.safeParse(value);
  if (parsed.success) return parsed.data as FromInstance;
  const issue = parsed.error.issues[0];
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new Error(`${where}${issue.message}`);
}

const sandboxPath = z
  .string()
  .max(4096)
  .refine((p) => p.startsWith('/') && !p.split('/').includes('..'), {
    message: 'must be an absolute path without ".."',
  });

/**
 * The `bind` frame the daemon sends a prewarmed runtime, checked before it
 * is sent (the host, which bundles only Node built-ins, checks its shape again).
 */
export const BindMessageSchema = z.strictObject({
  type: z.literal('bind'),
  functionName: z.string().min(1).max(128),
  version: z.number().int().min(1),
  bundle: sandboxPath,
  exportName: z.string().min(1).max(256),
  cwd: sandboxPath,
  env: z.record(z.string().max(256), z.string().max(64 * 1024)),
});

/** `value` as a bind frame, or an Error naming the first thing wrong with it. */
export function parseBindMessage(value: unknown): BindMessage {
  const parsed = BindMessageSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new Error(`bind frame ${where}${issue.message}`);
}
