/**
 * Imported by a snapshot entry before the function's module: its
 * initialisation sees the function's env, as in a cold start.
 *
 * Only Node built-ins may be imported here.
 */
import { applyFunctionEnv } from './env.ts';

applyFunctionEnv(process.env);
