import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runCommand as sh } from '../../net/index.ts';
import { cpuMirrorGroup, type CpuLimits, type CpuMirrorGroup } from './cpu.ts';
import { killProbe, spawnProbe, waitForProbe } from './probe.ts';

/**
 * The native baseline without Petri: one receiver namespace joined to each
 * of N sender namespaces by its own veth pair (10.251.<i>.1 on the
 * receiver's end, .2 on sender i's), a probe in each, run as root. N = 1 is
 * Boxer's "two plain namespaces joined by a veth pair".
 */
export interface NativeStar {
  receiver: { netns: string; address: string };
  /** Sender i+1: its namespace, its own address, and the receiver's address on its link. */
  senders: { netns: string; address: string; receiverAddress: string }[];
  /**
   * Puts namespace k (0: the receiver, i: sender i) under `limits[k]`, all in
   * one mirror of the members' node level (see cpu.ts).
   */
  limitCpu(limits: CpuLimits[]): Promise<void>;
  close(): Promise<void>;
}

export const MAX_SENDERS = 16;

export async function nativeStar(count: number): Promise<NativeStar> {
  if (!Number.isInteger(count) || count < 1 || count > MAX_SENDERS)
    throw new Error(`senders must be 1..${MAX_SENDERS}`);
  const tag = randomBytes(3).toString('hex');
  const receiverNs = `petri-f2f-x${tag}r`;
  const senderNs = Array.from({ length: count }, (_, i) => `petri-f2f-x${tag}s${i + 1}`);
  const all = [receiverNs, ...senderNs];
  const probes: ChildProcess[] = [];
  const mirrors: CpuMirrorGroup[] = [];
  const close = async (): Promise<void> => {
    for (const probe of probes) killProbe(probe);
    for (const ns of all) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    for (const mirror of mirrors) await mirror.remove().catch(() => undefined);
  };
  const star: NativeStar = {
    receiver: { netns: receiverNs, address: '10.251.1.1' },
    senders: senderNs.map((netns, i) => ({
      netns,
      address: `10.251.${i + 1}.2`,
      receiverAddress: `10.251.${i + 1}.1`,
    })),
    async limitCpu(limits) {
      const limited = all.slice(0, limits.length);
      const group = await cpuMirrorGroup(`petri-f2f-x${tag}`, limits.slice(0, limited.length));
      mirrors.push(group);
      for (const [k, ns] of limited.entries()) await group.mirrors[k].adopt(ns);
    },
    close,
  };
  try {
    const host = all.map((ns) => `netns add ${ns}`);
    for (const [i, ns] of senderNs.entries()) {
      host.push(
        `link add f2f${tag}r${i + 1} netns ${receiverNs} type veth peer name f2f${tag}s netns ${ns}`,
      );
    }
    await sh('ip', ['-batch', '-'], host.join('\n') + '\n');
    const inner = ['link set lo up'];
    for (let i = 1; i <= count; i++) {
      inner.push(`addr add 10.251.${i}.1/30 dev f2f${tag}r${i}`, `link set f2f${tag}r${i} up`);
    }
    await sh('ip', ['-n', receiverNs, '-batch', '-'], inner.join('\n') + '\n');
    for (const [i, ns] of senderNs.entries()) {
      const lines = [
        'link set lo up',
        `addr add 10.251.${i + 1}.2/30 dev f2f${tag}s`,
        `link set f2f${tag}s up`,
      ];
      await sh('ip', ['-n', ns, '-batch', '-'], lines.join('\n') + '\n');
    }
    for (const ns of all) probes.push(spawnProbe(ns));
    await waitForProbe(receiverNs, star.receiver.address);
    for (const sender of star.senders) await waitForProbe(sender.netns, sender.address);
  } catch (err) {
    await close();
    throw err;
  }
  return star;
}
