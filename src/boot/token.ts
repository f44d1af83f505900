import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { NodeConfig } from '../config.ts';
import { PetriError } from '../errors.ts';

export const TOKEN_FILE = 'api-token';

export interface ApiToken {
  token: string;
  /** Where it came from: set by the operator, or made by the node on its first start. */
  source: 'env' | 'config' | 'file';
}

/** Loopback names and addresses: the only places a node may listen with a token it made itself. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

/**
 * The API token: `PETRI_TOKEN`, else `auth.token` from the config, else the
 * one in `<stateDir>/api-token`, made (random, mode 0600) on the first start.
 * A node that listens beyond loopback must be given one: a token nobody set
 * would be readable only by whoever can read the state dir, and a node open
 * to the network deserves a secret its operator chose and knows.
 */
export async function resolveApiToken(
  config: NodeConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ApiToken> {
  const fromEnv = env.PETRI_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.length < 16)
      throw new PetriError('InvalidConfig', 'PETRI_TOKEN must be at least 16 characters');
    return { token: fromEnv, source: 'env' };
  }
  if (config.auth.token !== undefined) return { token: config.auth.token, source: 'config' };
  if (!isLoopbackHost(config.host)) {
    throw new PetriError(
      'InvalidConfig',
      `listening on ${config.host} (beyond loopback) needs an API token: set PETRI_TOKEN or auth.token`,
    );
  }
  return { token: await tokenFile(path.join(config.stateDir, TOKEN_FILE)), source: 'file' };
}

async function tokenFile(file: string): Promise<string> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (existing !== undefined && existing.trim().length >= 16) {
    await fs.chmod(file, 0o600);
    return existing.trim();
  }
  const token = randomBytes(32).toString('base64url');
  // Exclusive create with the mode set at birth, so the token is never readable by others.
  const handle = await fs.open(file, existing === undefined ? 'wx' : 'w', 0o600);
  try {
    await handle.writeFile(token + '\n');
  } finally {
    await handle.close();
  }
  await fs.chmod(file, 0o600);
  return token;
}
