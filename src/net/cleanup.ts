import { ipBatch, run } from './exec.ts';
import { removeFirewall } from './firewall.ts';
import { leftoverMatchers } from './naming.ts';

/** Names of the named network namespaces (`ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => name.length > 0);
}

function isLinkList(value: unknown): value is { ifname: string }[] {
  return (
    Array.isArray(value) &&
    value.every(
      (item: unknown) =>
        typeof item === 'object' &&
        item !== null &&
        typeof (item as { ifname?: unknown }).ifname === 'string',
    )
  );
}

/** Interface names in this process's namespace. */
export async function listLinks(): Promise<string[]> {
  const parsed: unknown = JSON.parse(await run('ip', ['-j', 'link', 'show']));
  return isLinkList(parsed) ? parsed.map((link) => link.ifname) : [];
}

export interface Leftovers {
  netns: string[];
  links: string[];
}

/** Names to keep: a set, or a function read after the listing (live names change meanwhile). */
export type KeepNames = ReadonlySet<string> | (() => ReadonlySet<string>);

/** This tag's namespaces and links, minus the names in `keep` (live ones). */
export async function findLeftovers(tag: string, keepNames: KeepNames): Promise<Leftovers> {
  const match = leftoverMatchers(tag);
  const [netns, links] = await Promise.all([listNetns(), listLinks()]);
  const keep = typeof keepNames === 'function' ? keepNames() : keepNames;
  return {
    netns: netns.filter((name) => match.netns.test(name) && !keep.has(name)),
    links: links.filter((name) => match.link.test(name) && !keep.has(name)),
  };
}

/**
 * Removes a tag's namespaces and links in one forced batch round (qdiscs go
 * with their devices). Links first, for the reason given in slotTeardownLines.
 */
export async function removeLeftovers(tag: string, keep: KeepNames): Promise<Leftovers> {
  const found = await findLeftovers(tag, keep);
  const lines = [
    ...found.links.map((name) => `link del ${name}`),
    ...found.netns.map((name) => `netns del ${name}`),
  ];
  // -force: one already-gone device (its peer's namespace went first) must not stop the rest.
  if (lines.length > 0) await ipBatch(lines, { force: true }).catch(() => undefined);
  return found;
}

/**
 * Removes everything a node with this tag made: namespaces, veths, IFBs (and
 * so their qdiscs) and its iptables chains. The bridge is left alone — it is
 * not tagged and a live node may use it. For tests and crash recovery.
 */
export async function cleanupAll(tag: string): Promise<Leftovers> {
  const found = await removeLeftovers(tag, new Set());
  await removeFirewall(tag).catch(() => undefined);
  return found;
}
