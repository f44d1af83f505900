import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { defaultAllowedSourcePaths, parseConfig, type NodeConfig } from '../../src/config.ts';
import { PetriNode, type NodeDeps } from '../../src/node/index.ts';
import { Store } from '../../src/store/index.ts';
import { FakeDriver } from './fake-driver.ts';
import { tempDir } from './tmp.ts';

export interface FakeNode {
  node: PetriNode;
  driver: FakeDriver;
  store: Store;
  config: NodeConfig;
  dir: string;
  close(): Promise<void>;
}

/**
 * A PetriNode over the in-memory FakeDriver, with a temp state dir; tests
 * write their functions under the OS temp dir, so deploys may read it.
 */
export async function fakeNode(
  config: Record<string, unknown> = {},
  deps: Pick<NodeDeps, 'daemonCpuset'> = {},
): Promise<FakeNode> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-test-'));
  const { deploy, ...rest } = config;
  const parsed = parseConfig({
    stateDir: dir,
    logLevel: 'silent',
    ...rest,
    deploy: {
      allowedSourcePaths: [...defaultAllowedSourcePaths(), os.tmpdir()],
      ...(deploy as Record<string, unknown> | undefined),
    },
  });
  const store = Store.open(path.join(dir, 'petri.db'));
  const driver = new FakeDriver();
  const node = new PetriNode({
    config: parsed,
    store,
    driver,
    log: pino({ level: 'silent' }),
    // The FakeDriver runs no binary; this is the default binary's real version.
    instanceNode: { binary: process.execPath, version: process.version },
    ...deps,
  });
  await node.start();
  return {
    node,
    driver,
    store,
    config: parsed,
    dir,
    close: async () => {
      await node.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A folder holding a tiny node handler, for deploys that need real code. */
export function handlerDir(source = 'export async function handler(e) { return e; }\n'): string {
  const dir = tempDir('petri-fn-');
  fs.writeFileSync(path.join(dir, 'index.mjs'), source);
  return dir;
}

export function deployBody(
  dir: string,
  spec: Record<string, unknown> = {},
): Record<string, unknown> {
  return { runtime: 'node', handler: 'index.handler', ...spec, source: { path: dir } };
}
