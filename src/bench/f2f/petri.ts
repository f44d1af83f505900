import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { z } from 'zod';
import { spawnDaemon, type Daemon } from '../../harness/index.ts';
import { nodeTagFrom } from '../../net/index.ts';
import { cpuLimitsIn, netnsWithAddress, type CpuLimits } from './cpu.ts';
import { PROBE_DIR, waitForProbe } from './probe.ts';

/** A daemon (in its own test namespace) that runs groups of the probe. */
export interface PetriNode {
  mode: 'off' | 'on';
  /** The daemon's test namespace, where members are reached from. */
  netns: string;
  /** Starts a group of `size` probes of `memoryMb`; resolves with member addresses in rank order. */
  startGroup(name: string, size: number, memoryMb: number): Promise<string[]>;
  removeGroup(name: string): Promise<void>;
  /** The node's CPU placement status (GET /v1/node), as reported. */
  placement(): Promise<unknown>;
  /** The network namespace of the member at `address` (where its bytes are counted). */
  memberNetns(address: string): Promise<string>;
  /** The CPU limits of each member, in rank order (what the native side mirrors). */
  cpuLimits(addresses: string[]): Promise<CpuLimits[]>;
  close(): Promise<void>;
}

const GroupReply = z.object({
  members: z.array(z.object({ rank: z.number(), address: z.string() })),
});

/** `directPath` false: members are always routed through the node (config groups.directPath). */
export async function petriNode(mode: 'off' | 'on', directPath = true): Promise<PetriNode> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `petri-bench-f2f-${mode}-`));
  const configFile = path.join(workDir, 'config.json');
  const config = {
    ...(mode === 'off' ? { isolation: { shaping: 'off' } } : {}),
    ...(directPath ? {} : { groups: { directPath: false } }),
  };
  fs.writeFileSync(configFile, JSON.stringify(config));
  const stateDir = path.join(workDir, 'state');
  let daemon: Daemon | undefined;
  const close = async (): Promise<void> => {
    await daemon?.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  try {
    daemon = await spawnDaemon({ stateDir, configFile, allowSourcePaths: [PROBE_DIR] });
  } catch (err) {
    await close();
    throw err;
  }
  const d = daemon;
  const netns = d.testbed!.name;
  const tag = nodeTagFrom(stateDir);
  const call = async (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, body?: unknown) => {
    const response = await request(d.url + url, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: {
        ...d.headers,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${text}`);
    return text ? (JSON.parse(text) as unknown) : undefined;
  };
  const spec = JSON.parse(fs.readFileSync(path.join(PROBE_DIR, 'petri.json'), 'utf8')) as object;
  return {
    mode,
    netns,
    async startGroup(name, size, memoryMb) {
      await call('PUT', `/v1/functions/${name}`, {
        ...spec,
        name,
        memoryMb,
        source: { path: PROBE_DIR },
      });
      const group = GroupReply.parse(
        await call('POST', '/v1/groups', { function: name, size, barrier: size, name }),
      );
      const addresses = [...group.members].sort((a, b) => a.rank - b.rank).map((m) => m.address);
      for (const address of addresses) await waitForProbe(netns, address);
      return addresses;
    },
    async removeGroup(name) {
      await call('DELETE', `/v1/groups/${name}`);
    },
    async placement() {
      const info = z.object({ placement: z.unknown() }).parse(await call('GET', '/v1/node'));
      return info.placement;
    },
    memberNetns(address) {
      return netnsWithAddress(tag, address);
    },
    async cpuLimits(addresses) {
      const out: CpuLimits[] = [];
      for (const address of addresses)
        out.push(await cpuLimitsIn(await netnsWithAddress(tag, address)));
      return out;
    },
    close,
  };
}
