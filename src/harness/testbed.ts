import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runCommand as run } from '../net/index.ts';

/**
 * A network namespace made for one test or benchmark run, joined to this
 * namespace by a veth pair with a /30 of its own. A daemon under test runs
 * inside it (`nsenterArgs`), listens on `innerAddress`, and everything it
 * builds (bridge, instance namespaces) lives behind it: traffic goes only to
 * addresses inside namespaces the run made.
 */
export interface Testbed {
  readonly name: string;
  /** The address on this side of the veth. */
  readonly outerAddress: string;
  /** The address inside the namespace: daemons under test listen here. */
  readonly innerAddress: string;
  /** Prefix that runs a command inside the namespace (network only; mounts stay shared). */
  nsenterArgs(): string[];
  close(): Promise<void>;
}

/** Whether this process can make namespaces (root with iproute2). */
export function canMakeTestbed(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('ip', ['-V']).status === 0;
}

async function ipBatch(lines: string[], namespace?: string): Promise<void> {
  const args = namespace ? ['-n', namespace, '-batch', '-'] : ['-batch', '-'];
  await run('ip', args, lines.join('\n') + '\n');
}

/** Makes a fresh namespace with a veth to this one. Call `close` to remove both. */
export async function createTestbed(): Promise<Testbed> {
  const tag = randomBytes(3).toString('hex');
  const name = `petri-tb-${tag}`;
  const outerLink = `tb${tag}o`;
  const innerLink = `tb${tag}i`;
  // A random /30 inside 10.254.0.0/16, away from the bridge's default 10.213.0.0/16.
  const octet = 1 + (parseInt(tag.slice(0, 2), 16) % 254);
  const base = (parseInt(tag.slice(2, 4), 16) % 64) * 4;
  const outerAddress = `10.254.${octet}.${base + 1}`;
  const innerAddress = `10.254.${octet}.${base + 2}`;
  let closed: Promise<void> | undefined;
  const remove = (): Promise<void> => {
    // Deleting the namespace takes the inner veth end, and with it the outer one.
    closed ??= run('ip', ['netns', 'del', name]).then(
      () => undefined,
      () => undefined,
    );
    return closed;
  };
  try {
    await ipBatch([
      `netns add ${name}`,
      `link add ${outerLink} type veth peer name ${innerLink} netns ${name}`,
      `addr add ${outerAddress}/30 dev ${outerLink}`,
      `link set ${outerLink} up`,
    ]);
    await ipBatch(
      [
        'link set lo up',
        `addr add ${innerAddress}/30 dev ${innerLink}`,
        `link set ${innerLink} up`,
      ],
      name,
    );
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    name,
    outerAddress,
    innerAddress,
    nsenterArgs: () => ['nsenter', `--net=/run/netns/${name}`, '--'],
    close: remove,
  };
}
