import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { spawnDaemon, type Daemon } from '../harness/index.ts';
import { parseConfig } from '../config.ts';
import { table } from '../report/index.ts';
import { resourcesFor } from '../sandbox/index.ts';
import { benchArgs, machineFacts, ratio, writeJson } from './common.ts';

/** A handler that burns CPU for `ms` of wall time and reports what it got. */
const SPIN = `
export async function handler(event) {
  const start = process.cpuUsage();
  const wall = Date.now();
  while (Date.now() - wall < event.ms) {}
  const used = process.cpuUsage(start);
  return { cpuMs: (used.user + used.system) / 1000, wallMs: Date.now() - wall };
}
`;

interface Share {
  memoryMb: number;
  quota: number;
  /** CPU time the handler measured itself ÷ wall time. */
  share: number;
  /** The same from the instance's cgroup (the invocation record). */
  cgroupShare: number | undefined;
  ratio: number;
  withinTarget: boolean;
}

async function json(
  pool: Pool,
  auth: Record<string, string>,
  method: 'PUT' | 'POST' | 'GET',
  url: string,
  body?: unknown,
) {
  const response = await pool.request({
    method,
    path: url,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...auth, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${text}`);
  return { body: JSON.parse(text) as Record<string, unknown>, headers: response.headers };
}

async function measure(daemon: Daemon, dir: string, memoryMb: number, ms: number): Promise<Share> {
  const pool = new Pool(daemon.url, { connections: 1 });
  try {
    const name = `spin-${memoryMb}`;
    await json(pool, daemon.headers, 'PUT', `/v1/functions/${name}`, {
      runtime: 'node',
      memoryMb,
      timeoutMs: ms * 4,
      source: { path: dir },
    });
    await json(pool, daemon.headers, 'POST', `/v1/functions/${name}/invoke`, { ms: 10 }); // past the init boost
    const { body, headers } = await json(
      pool,
      daemon.headers,
      'POST',
      `/v1/functions/${name}/invoke`,
      { ms },
    );
    await sleep(100);
    const record = await json(
      pool,
      daemon.headers,
      'GET',
      `/v1/invocations/${headers['x-petri-invocation-id']}`,
    );
    const resources = record.body.resources as { cpuMs?: number };
    const timings = record.body.timings as { executionMs?: number };
    const quota = resourcesFor(memoryMb, parseConfig({}).resources).cpu;
    const share = (body.cpuMs as number) / (body.wallMs as number);
    const cgroupShare =
      resources.cpuMs !== undefined && timings.executionMs
        ? resources.cpuMs / timings.executionMs
        : undefined;
    return {
      memoryMb,
      quota,
      share,
      cgroupShare,
      ratio: ratio(share, quota),
      withinTarget: Math.abs(share / quota - 1) <= 0.2,
    };
  } finally {
    await pool.close();
  }
}

/** `npm run bench -- cpu`: each memory size's measured CPU share against its quota. */
export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    sizes: { type: 'string', default: '128,256,512,1024,1769' },
    ms: { type: 'string', default: '2000' },
  });
  const sizes = String(args.sizes).split(',').map(Number);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-cpu-'));
  const codeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-spin-'));
  fs.writeFileSync(path.join(codeDir, 'index.mjs'), SPIN);
  const daemon = await spawnDaemon({ stateDir });
  const results: Share[] = [];
  try {
    for (const memoryMb of sizes) {
      process.stderr.write(`[bench cpu] ${memoryMb} MB: spinning ${args.ms} ms\n`);
      results.push(await measure(daemon, codeDir, memoryMb, Number(args.ms)));
    }
    const node = await (await fetch(`${daemon.url}/v1/node`)).json();
    const active = (
      node as { isolation: { mechanisms: { name: string; active: boolean }[] } }
    ).isolation.mechanisms
      .filter((m) => m.active)
      .map((m) => m.name);
    console.log(
      table(
        ['memory', 'quota (vCPU)', 'measured share', 'cgroup share', 'ratio', 'within ±20 %'],
        results.map((r) => [
          `${r.memoryMb} MB`,
          r.quota.toFixed(3),
          r.share.toFixed(3),
          r.cgroupShare?.toFixed(3),
          r.ratio,
          r.withinTarget ? 'yes' : 'NO',
        ]),
        {
          title: `npm run bench -- cpu · ${os.availableParallelism()} cores · ${active.join(', ') || 'no isolation'}`,
        },
      ),
    );
    await writeJson(args.json as string | undefined, {
      benchmark: 'cpu',
      machine: machineFacts(),
      isolation: active,
      spinMs: Number(args.ms),
      results,
    });
  } finally {
    await daemon.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.rmSync(codeDir, { recursive: true, force: true });
  }
}
