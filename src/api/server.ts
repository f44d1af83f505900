import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { parseConfig, type NodeConfig } from '../config.ts';
import { PetriNode } from '../node/index.ts';
import { buildHost, checkNodeBinary } from '../runtime/index.ts';
import { createDriver, daemonCpusetFor } from '../sandbox/create.ts';
import { Store } from '../store/index.ts';
import { buildApp } from './app.ts';

export interface RunningNode {
  url: string;
  config: NodeConfig;
  node: PetriNode;
  app: FastifyInstance;
  log: Logger;
  close(): Promise<void>;
}

/**
 * Starts a Petri node: store, sandbox driver, orchestrator and HTTP API,
 * recovering from an earlier crash first.
 *
 * @example const running = await startNode({ port: 0, stateDir: '/tmp/petri' }); await running.close();
 */
export async function startNode(input: unknown = {}): Promise<RunningNode> {
  const config = parseConfig(input);
  // Before anything is made: a bad binary would otherwise fail every instance later.
  const instanceNode = await checkNodeBinary(config.runtime.nodeBinary);
  const log = pino({ level: config.logLevel, base: undefined });
  await fs.mkdir(config.stateDir, { recursive: true });
  const hostScript = path.join(config.stateDir, 'runtime', 'host.mjs');
  await buildHost(hostScript);
  const store = Store.open(path.join(config.stateDir, 'petri.db'));
  const driver = await createDriver(config, hostScript, log);
  const node = new PetriNode({
    config,
    store,
    driver,
    log,
    instanceNode,
    daemonCpuset: daemonCpusetFor(config),
  });
  await node.start();
  const app = buildApp(node, { payloadLimitBytes: config.payloadLimitBytes, logger: log });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await node.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    config,
    node,
    app,
    log,
    close: () => {
      closed ??= (async () => {
        await app.close();
        await node.close();
      })();
      return closed;
    },
  };
}
