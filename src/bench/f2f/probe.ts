import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { runCommand as sh } from '../../net/index.ts';

/**
 * Talking to the probe (../net-functions/f2f/probe.mjs) that runs on every
 * side of `bench net --f2f`: in a group member (sandboxed function code) or
 * in a plain namespace. Its answers are parsed with zod, as anything that
 * comes out of a sandbox.
 */

export const PROBE_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../net-functions/f2f',
);
/** The probe's first iperf3 port; it serves IPERF_PORTS of them from here. */
export const IPERF_PORT = 5201;
export const IPERF_PORTS = 17;

const ASK_SCRIPT = `const s=require('net').connect(7000,process.argv[1]);let b='';
s.setTimeout(120000,()=>{console.log(JSON.stringify({error:'timeout'}));process.exit(0)});
s.on('connect',()=>s.write(process.argv[2]+'\\n'));s.on('data',d=>b+=d);s.on('end',()=>console.log(b.trim()||'{}'));
s.on('error',e=>{console.log(JSON.stringify({error:e.code}));process.exit(0)})`;

const MAX_ANSWER = 1 << 20;
const Finite = z.number().finite();
export const IperfAnswer = z.object({
  mbit: Finite.nonnegative(),
  startedAt: Finite.optional(),
  endedAt: Finite.optional(),
});
export const RttAnswer = z.object({ us: z.array(Finite.nonnegative()).max(100_000) });
export const TtfbAnswer = z.object({ ms: z.array(Finite.nonnegative()).max(100_000) });
const Ping = z.object({ ok: z.literal(true) });

/** Sends one control line to the probe at `host` (from inside `netns`) and checks its answer. */
export async function ask<T>(
  netns: string,
  host: string,
  line: string,
  schema: z.ZodType<T>,
): Promise<T> {
  const out = await sh('nsenter', [
    `--net=/run/netns/${netns}`,
    '--',
    process.execPath,
    '-e',
    ASK_SCRIPT,
    host,
    line,
  ]);
  if (out.length > MAX_ANSWER) throw new Error(`probe at ${host}: answer too large`);
  let answer: unknown;
  try {
    answer = JSON.parse(out.trim());
  } catch {
    throw new Error(`probe at ${host}: not JSON: ${out.slice(0, 200)}`);
  }
  const failed = z.object({ error: z.unknown() }).safeParse(answer);
  if (failed.success) throw new Error(`probe at ${host}: ${JSON.stringify(failed.data.error)}`);
  const parsed = schema.safeParse(answer);
  if (!parsed.success) throw new Error(`probe at ${host}: unexpected answer ${out.slice(0, 200)}`);
  return parsed.data;
}

export async function waitForProbe(netns: string, host: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await ask(netns, host, 'ping', Ping);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** Starts the probe as root in `netns`, in its own process group (its iperf3s go with it). */
export function spawnProbe(netns: string): ChildProcess {
  return spawn(
    'nsenter',
    [`--net=/run/netns/${netns}`, '--', process.execPath, path.join(PROBE_DIR, 'probe.mjs')],
    { stdio: 'ignore', detached: true },
  );
}

export function killProbe(probe: ChildProcess): void {
  try {
    if (probe.pid) process.kill(-probe.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
