import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { parseConfig, type NodeConfig } from '../config.ts';
import { PetriNode } from '../node/index.ts';
import { buildHost, checkNodeBinary } from '../runtime/index.ts';
import { createDriver, daemonCpusetFor } from './driver.ts';
import { Store } from '../store/index.ts';
import { AddressAllocator } from '../net/index.ts';
import { buildApp } from '../api/index.ts';
import { resolveApiToken } from './token.ts';

export interface RunningNode {
  url: string;
  config: NodeConfig;
  /** The API token every `/v1` request must carry. */
  token: string;
  node: PetriNode;
  app: FastifyInstance;
  log: Logger;
  close(): Promise<void>;
}

/**
 * A deploy body holds the archive in base64 (4 bytes per 3) plus the spec; the
 * slack lets an archive just over the cap reach the node's own, clearer error.
 */
function deployBodyLimit(maxArchiveBytes: number): number {
  return Math.ceil(maxArchiveBytes / 3) * 4 + 1024 * 1024;
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
  const { token } = await resolveApiToken(config);
  const log = pino({ level: config.logLevel, base: undefined });
  await fs.mkdir(config.stateDir, { recursive: true });
  const hostScript = path.join(config.stateDir, 'runtime', 'host.mjs');
  await buildHost(hostScript);
  const store = Store.open(path.join(config.stateDir, 'petri.db'));
  store.startLogExpiry(config.logs, (err) => log.warn({ err }, 'log expiry failed'));
  store.startHistoryExpiry(config.history, (err) => log.warn({ err }, 'history expiry failed'));
  const driver = await createDriver(config, hostScript, log);
  const node = new PetriNode({
    config,
    store,
    driver,
    log,
    daemonCpuset: daemonCpusetFor(config),
    instanceNode,
    gateway: new AddressAllocator(config.network.subnet).gateway,
  });
  await node.start();
  const app = buildApp(node, {
    payloadLimitBytes: config.payloadLimitBytes,
    responseLimitBytes: config.responseLimitBytes,
    deployLimitBytes: deployBodyLimit(config.deploy.maxArchiveBytes),
    logger: log,
    token,
    publicMetrics: config.auth.publicMetrics,
  });
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
    token,
    node,
    app,
    log,
    close: () => {
      closed ??= (async () => {
        try {
          await closeHttp(app);
        } finally {
          // The node's clean-up (instances, cgroups, namespaces) runs even if the HTTP side failed.
          await node.close();
        }
      })();
      return closed;
    },
  };
}

/** How often a closing server looks for connections that went idle. */
const IDLE_SWEEP_MS = 20;

/**
 * Closes the HTTP side, letting requests in flight finish. Node closes only
 * the connections idle when close begins; one whose request was still in
 * flight answers keep-alive and would then hold the close up for the
 * keep-alive timeout (72 s in fastify), so close each as soon as it is idle.
 */
async function closeHttp(app: FastifyInstance): Promise<void> {
  const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
  }
}
