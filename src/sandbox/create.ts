import type { Logger } from 'pino';
import type { NodeConfig } from '../config.ts';
import type { IsolationLayer } from './layer.ts';
import { ProcessDriver } from './process.ts';
import type { SandboxDriver } from './types.ts';

/** Builds the node's sandbox driver with every isolation layer this node can use. */
export async function createDriver(
  _config: NodeConfig,
  hostScript: string,
  _log: Logger,
): Promise<SandboxDriver> {
  const layers: IsolationLayer[] = [];
  return new ProcessDriver({ hostScript, layers });
}
