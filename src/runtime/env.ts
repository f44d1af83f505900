/**
 * How a function's own `env` reaches its code. The daemon never puts it in
 * any process's environment: the launch chain runs as root and the instance
 * host is Node, so keys such as PATH, LD_PRELOAD, BASH_ENV or NODE_OPTIONS
 * would act there, outside the sandbox or before the host is in control.
 * Instead the whole env travels as one JSON value, which the host decodes
 * and applies to its own process.env once it runs inside the sandbox: the
 * handler and every command it spawns see the function's env; nothing
 * before them does.
 *
 * Only Node built-ins may be imported here (the instance host bundles it).
 */

/** The variable carrying the function's env, as JSON, from the daemon to the instance host. */
export const FUNCTION_ENV_VAR = 'PETRI_FUNCTION_ENV';

/** Petri's own variables (PETRI_RUNTIME, PETRI_ADDRESS …); a function's env cannot change them. */
export const RESERVED_ENV_PREFIX = 'PETRI_';

/** The value of FUNCTION_ENV_VAR for `env`. */
export function encodeFunctionEnv(env: Record<string, string>): string {
  return JSON.stringify(env);
}

/**
 * Moves the function's env from FUNCTION_ENV_VAR into `env` (the host's
 * process.env), keeping the PETRI_* variables Petri set as they are (a
 * function's own PETRI_SYNTH_ITERS_PER_MS and the like still apply).
 *
 * @example applyFunctionEnv(process.env) // process.env.GREETING === 'hi'
 */
export function applyFunctionEnv(env: NodeJS.ProcessEnv): void {
  const text = env[FUNCTION_ENV_VAR];
  delete env[FUNCTION_ENV_VAR];
  if (!text) return;
  const vars = JSON.parse(text) as Record<string, string>;
  for (const [key, value] of Object.entries(vars)) {
    if (!(key.startsWith(RESERVED_ENV_PREFIX) && env[key] !== undefined)) env[key] = value;
  }
}
