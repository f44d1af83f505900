import { writeFile } from 'node:fs/promises';
import type { NodeConfig } from '../config.ts';
import type { IsolationLayer, LayerInstance } from '../sandbox/index.ts';
import type { MechanismStatus, SandboxSpec, Usage } from '../sandbox/index.ts';
import { AddressAllocator } from './address.ts';
import {
  bridgeLines,
  egressRouteLines,
  reshapeLines,
  shapeKey,
  shapingLines,
  slotHostLines,
  slotInnerLines,
  slotTeardownLines,
  unshapeLines,
} from './batch.ts';
import { removeLeftovers } from './cleanup.ts';
import { ipBatch, run, succeedsSync, tcBatch } from './exec.ts';
import {
  allowEgress,
  allowInbound,
  enableForwarding,
  installFirewall,
  installNat,
  removeFirewall,
  revokeEgress,
  revokeInbound,
  type FirewallSpec,
  type InboundPorts,
} from './firewall.ts';
import {
  allowGroupMember,
  ensureGroupChain,
  removeGroupChain,
  revokeGroupMember,
  type GroupMemberRules,
} from './group-firewall.ts';
import { GroupPaths, randomMac } from './group-path.ts';
import { KeptFile, TRUSTED_PATH, findHostTool } from '../sandbox/index.ts';
import {
  INSTANCE_IFNAME,
  assertIfName,
  bridgeMac,
  assertNodeTag,
  netnsPath,
  slotNames,
} from './naming.ts';
import { NamespacePool, type Slot } from './pool.ts';
import { countersIn, readCounters, type Counters } from './stats.ts';

/** The network layer plus what tests and benchmarks need to see. */
export interface NetworkLayer extends IsolationLayer {
  readonly bridge: string;
  /** The bridge's address, which instances reach the node by. */
  readonly gateway: string;
  /** Resolves when the namespace pool has stopped refilling (full or failed). */
  poolIdle(): Promise<void>;
  /** Ready namespaces in the pool right now. */
  poolReady(): number;
}

type MechanismName = 'netns' | 'shaping' | 'firewall' | 'egress-nat';
/** Firewall rules an instance was given, to take back at tear-down. */
type Grants = {
  egress: boolean;
  inbound: false | InboundPorts;
  group?: GroupMemberRules;
  /** On its group's direct path (group-path.ts). */
  directPath?: boolean;
};

/** `network.inbound` as the firewall takes it. */
function inboundOf(spec: SandboxSpec): false | InboundPorts {
  const inbound = spec.network.inbound;
  if (inbound === true) return true;
  return Array.isArray(inbound) && inbound.length > 0 ? inbound : false;
}
type Shape = { bandwidthMbit: number; burstBytes: number };

/** How long a refill waits after a prepare, so the instance spawns first. */
const REFILL_DELAY_MS = 30;
const TBF_PROBE = ['rate', '1mbit', 'burst', '4096', 'latency', '50ms'];

/**
 * Network isolation for the process driver (DESIGN §9, §10): each instance
 * in its own namespace on an isolated port of the Petri bridge, shaped both
 * ways on the host side, with a route out (NAT, public destinations and the
 * config's allow-list only) when its spec asks for egress; the firewall keeps
 * it from the node's services and the node from it (firewall.ts). Without
 * root or tools it reports why and wraps nothing.
 *
 * @example
 * const net = networkLayer(config, nodeTagFrom(config.stateDir), log.warn);
 * await net.reconcile();               // removes a crashed run's leftovers, builds the bridge
 * const inst = await net.prepare(spec);
 * spawn(...inst.wrap(['node', 'host.js'])); // nsenter --net=/run/netns/petri-<tag>-1 -- node host.js
 * await inst.destroy();
 * await net.close();
 */
export function networkLayer(
  config: NodeConfig,
  nodeTag: string,
  warn: (message: string) => void,
  options: NetworkLayerOptions = {},
): NetworkLayer {
  return new NetLayer(config, nodeTag, warn, options.nsenter ?? findHostTool('nsenter'));
}

export interface NetworkLayerOptions {
  /**
   * Absolute path of nsenter (resolved from the trusted PATH when absent): it
   * runs as root in the launch chain, so it is never looked up by name.
   */
  nsenter?: string;
}

class NetLayer implements NetworkLayer {
  readonly bridge: string;
  readonly gateway: string;
  private readonly allocator: AddressAllocator;
  private readonly status: Record<MechanismName, MechanismStatus>;
  private readonly pool: NamespacePool;
  private readonly instances = new Set<NetInstance>();
  /** Every slot made and not yet torn down: pool, in use, or being built. */
  private readonly slots = new Set<Slot>();
  private readonly warned = new Set<string>();
  private readonly firewall: FirewallSpec;
  private readonly coordinatorPort: number;
  /** Per live group id: members with rules, and the chain's creation. */
  private readonly groups = new Map<number, { members: number; chain: Promise<void> }>();
  private readonly paths = new GroupPaths();
  private readonly directPath: boolean;
  private counter = 1;
  /** Shaping of the latest prepare; the pool pre-shapes new slots with it. */
  private poolShape: Shape | undefined;
  private started: Promise<void> | undefined;
  private forwardingOn = false;
  private closed = false;

  constructor(
    config: NodeConfig,
    private readonly tag: string,
    private readonly warn: (message: string) => void,
    private readonly nsenter: string | undefined,
  ) {
    assertNodeTag(tag);
    assertIfName(config.network.bridge);
    this.bridge = config.network.bridge;
    this.allocator = new AddressAllocator(config.network.subnet);
    this.gateway = this.allocator.gateway;
    this.firewall = {
      tag,
      bridge: this.bridge,
      subnet: this.allocator.cidr,
      egressAllow: config.network.egressAllow,
      services: [],
    };
    this.coordinatorPort = config.groups.coordinatorPort;
    this.directPath = config.groups.directPath;
    this.status = probe(config, tag, nsenter);
    this.pool = new NamespacePool(
      config.network.poolSize,
      () => this.createSlot(this.poolShape),
      (error) => this.warnOnce('pool', `network namespace pool refill failed: ${String(error)}`),
    );
    for (const status of Object.values(this.status)) {
      // Switched off on purpose, or already covered by the netns/firewall warning: not news.
      const expected = /^(off in config|needs netns|needs firewall)/.test(status.reason ?? '');
      if (!status.active && !expected) {
        this.warnOnce(status.name, `${status.name} inactive: ${status.reason}`);
      }
    }
  }

  mechanisms(): MechanismStatus[] {
    return Object.values(this.status).map((status) => ({ ...status }));
  }

  poolIdle(): Promise<void> {
    return this.pool.idle();
  }

  poolReady(): number {
    return this.pool.readyCount;
  }

  async prepare(spec: SandboxSpec): Promise<LayerInstance> {
    if (this.closed) throw new Error('network layer is closed');
    const nsenter = this.nsenter;
    if (!this.status.netns.active || !nsenter) return identityInstance();
    await this.ensureStarted();
    if (!this.status.netns.active) return identityInstance();
    const slot = this.pool.take() ?? (await this.createSlot());
    const grants: Grants = { egress: false, inbound: false };
    try {
      // Settled, not Promise.all: a rule added after a sibling failed would outlive the revoke.
      const [shaped, egress, inbound, group] = await Promise.allSettled([
        this.applyShaping(slot, spec),
        this.openEgress(slot, spec),
        this.openInbound(slot, spec),
        this.joinGroup(slot, spec),
      ]);
      for (const step of [shaped, egress, inbound, group]) {
        if (step.status === 'rejected') throw step.reason;
      }
      grants.egress = egress.status === 'fulfilled' && egress.value;
      grants.inbound = inbound.status === 'fulfilled' && inbound.value;
      grants.group = group.status === 'fulfilled' ? group.value : undefined;
      // After the shaping settled: the path is only for unshaped slots and adds an ingress qdisc.
      grants.directPath = await this.joinDirectPath(slot, grants);
    } catch (error) {
      // Revoking a rule that was never added is quiet, so take back all that may have been.
      const rules = this.groupRules(slot, spec);
      await this.teardown(slot, {
        egress: spec.network.egress,
        inbound: inboundOf(spec),
        group: rules,
        directPath: rules !== undefined,
      });
      throw error;
    } finally {
      this.pool.refill(REFILL_DELAY_MS);
    }
    const base = (await readCounters(slot.hostVeth)) ?? { rxBytes: 0, txBytes: 0 };
    const instance = new NetInstance(slot, nsenter, this.gateway, grants.egress, base, async () => {
      this.instances.delete(instance);
      await this.teardown(slot, grants);
    });
    this.instances.add(instance);
    if (this.closed) {
      // close() ran while this prepare was in flight and could not see it.
      await instance.destroy();
      throw new Error('network layer is closed');
    }
    return instance;
  }

  async reconcile(): Promise<void> {
    if (!this.status.netns.active || this.closed) return;
    // Live names are read after the listing, so a slot born meanwhile is kept.
    await removeLeftovers(this.tag, () => this.liveNames());
    // Chains are rebuilt by start; once started they hold live egress rules.
    if (!this.started) await removeFirewall(this.tag).catch(() => undefined);
    await this.ensureStarted();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const slots = await this.pool.drain();
    await Promise.all([...this.instances].map((instance) => instance.destroy()));
    if (slots.length > 0) {
      await ipBatch(
        slots.flatMap((slot) => slotTeardownLines(slot, this.bridge)),
        { force: true },
      ).catch((error: unknown) => this.warn(`network pool tear-down: ${String(error)}`));
      for (const slot of slots) this.slots.delete(slot);
    }
    if (!this.started) return;
    await this.started.catch(() => undefined);
    if (this.status.firewall.active) await removeFirewall(this.tag).catch(() => undefined);
    await ipBatch([`link del ${this.bridge}`]).catch(() => undefined);
  }

  private ensureStarted(): Promise<void> {
    this.started ??= this.start();
    return this.started;
  }

  /** Bridge with the gateway address, firewall chains, then a background pool fill. */
  private async start(): Promise<void> {
    try {
      const exists = await run('ip', ['link', 'show', 'dev', this.bridge]).then(
        () => true,
        () => false,
      );
      const spec = {
        bridge: this.bridge,
        gateway: this.gateway,
        prefixLength: this.allocator.subnet.prefixLength,
        mac: bridgeMac(this.tag),
      };
      await ipBatch(bridgeLines(spec, exists));
      await disableBridgeIpv6(this.bridge);
      await routeAcrossBridge(this.bridge);
    } catch (error) {
      this.disable('netns', `bridge ${this.bridge} could not be set up: ${String(error)}`);
      this.disable('shaping', 'needs netns');
      this.disable('firewall', 'needs netns');
      this.disable('egress-nat', 'needs netns');
      return;
    }
    if (this.status.firewall.active) {
      await installFirewall(this.firewall).catch((error: unknown) => {
        this.disable('firewall', `iptables chains could not be installed: ${String(error)}`);
        this.disable('egress-nat', 'needs firewall');
      });
    }
    if (this.status['egress-nat'].active) {
      await installNat(this.firewall).catch((error: unknown) =>
        this.disable('egress-nat', `the nat chain could not be installed: ${String(error)}`),
      );
    }
    this.pool.refill();
  }

  /**
   * Lets the node open connections to the instance (a per-instance ACCEPT in
   * the output chain); false when not granted. Only the node for now: other
   * instances stay cut off at layer 2 until function groups say who may connect.
   */
  private async openInbound(slot: Slot, spec: SandboxSpec): Promise<false | InboundPorts> {
    const inbound = inboundOf(spec);
    if (inbound === false || !this.status.firewall.active) return false;
    await allowInbound(this.firewall, slot.address, inbound);
    return inbound;
  }

  private groupRules(slot: Slot, spec: SandboxSpec): GroupMemberRules | undefined {
    if (!spec.group) return undefined;
    return {
      groupId: spec.group.id,
      address: slot.address,
      inbound: inboundOf(spec),
      gateway: this.gateway,
      coordinatorPort: this.coordinatorPort,
    };
  }

  /**
   * A group member: routed to its peers through the node (the bridge's ports
   * stay isolated), let through by its group's chain, and to the coordinator.
   * Without the firewall a group cannot be confined, so the start fails.
   */
  private async joinGroup(slot: Slot, spec: SandboxSpec): Promise<GroupMemberRules | undefined> {
    const rules = this.groupRules(slot, spec);
    if (!rules) return undefined;
    if (!this.status.firewall.active) {
      throw new Error(`function groups need the firewall: ${this.status.firewall.reason}`);
    }
    let group = this.groups.get(rules.groupId);
    if (!group) {
      group = { members: 0, chain: ensureGroupChain(this.firewall, rules.groupId) };
      this.groups.set(rules.groupId, group);
    }
    group.members += 1;
    if (!this.forwardingOn) {
      await enableForwarding();
      this.forwardingOn = true;
    }
    await group.chain;
    await allowGroupMember(this.firewall, rules);
    return rules;
  }

  /**
   * Puts a member on its group's direct path (group-path.ts) when the group
   * rules would pass all its traffic with its peers anyway: it opens every
   * port and is not shaped. False: it stays routed.
   */
  private async joinDirectPath(slot: Slot, grants: Grants): Promise<boolean> {
    const rules = grants.group;
    if (!this.directPath || !rules || rules.inbound !== true || slot.shaped) return false;
    await this.paths.join(rules.groupId, slot);
    return true;
  }

  private async leaveGroup(rules: GroupMemberRules, directPath: boolean): Promise<void> {
    // Off the direct path before the rules go: nothing of it outlives the member.
    if (directPath) await this.paths.leave(rules.groupId, rules.address);
    await revokeGroupMember(this.firewall, rules);
    const group = this.groups.get(rules.groupId);
    if (!group) return;
    group.members -= 1;
    if (group.members > 0) return;
    this.groups.delete(rules.groupId);
    await removeGroupChain(this.firewall, rules.groupId);
  }

  /** Namespace, veth, IFB and address; with `shape`, its shaping too (pool slots). */
  private async createSlot(shape?: Shape): Promise<Slot> {
    const n = this.counter++;
    const slot: Slot = {
      ...slotNames(this.tag, n),
      n,
      address: this.allocator.allocate(),
      mac: randomMac(),
    };
    this.slots.add(slot);
    try {
      await ipBatch(slotHostLines(slot, this.bridge));
      const inner = slotInnerLines(slot.address, this.allocator.subnet.prefixLength);
      await ipBatch(inner, { netns: slot.netns });
      if (shape && this.status.shaping.active) {
        await tcBatch(shapingLines({ ...slot, ...shape }));
        slot.shaped = shapeKey(shape);
      }
      return slot;
    } catch (error) {
      await this.teardown(slot, { egress: false, inbound: false });
      throw error;
    }
  }

  /**
   * Gives the slot the spec's shaping. A pool slot usually already has it
   * (the pool shapes new slots like the latest prepare), which saves the one
   * `tc` process a cold start would otherwise wait for.
   */
  private async applyShaping(slot: Slot, spec: SandboxSpec): Promise<void> {
    if (!this.status.shaping.active) return;
    const { bandwidthMbit, burstBytes } = spec.resources;
    if (!(bandwidthMbit > 0)) {
      if (slot.shaped) await tcBatch(unshapeLines(slot));
      slot.shaped = undefined;
      return;
    }
    const shape = { bandwidthMbit, burstBytes };
    const key = shapeKey(shape);
    this.poolShape = shape;
    if (slot.shaped === key) return;
    const lines = slot.shaped ? reshapeLines : shapingLines;
    await tcBatch(lines({ ...slot, ...shape }));
    slot.shaped = key;
  }

  /** Default route plus a firewall ACCEPT for this source; false when not granted. */
  private async openEgress(slot: Slot, spec: SandboxSpec): Promise<boolean> {
    if (!spec.network.egress) return false;
    const nat = this.status['egress-nat'];
    if (!nat.active) {
      this.warnOnce('egress', `egress requested but egress-nat is inactive: ${nat.reason}`);
      return false;
    }
    if (!this.forwardingOn) {
      await enableForwarding();
      this.forwardingOn = true;
    }
    await Promise.all([
      ipBatch(egressRouteLines(this.gateway), { netns: slot.netns }),
      allowEgress(this.firewall, slot.address),
    ]);
    return true;
  }

  private async teardown(slot: Slot, grants: Grants): Promise<void> {
    // Before the address goes back to the allocator, so no rule outlives its instance.
    await Promise.all([
      grants.egress && revokeEgress(this.firewall, slot.address),
      grants.inbound !== false && revokeInbound(this.firewall, slot.address, grants.inbound),
      grants.group && this.leaveGroup(grants.group, grants.directPath === true),
    ]);
    await ipBatch(slotTeardownLines(slot, this.bridge), { force: true }).catch((error: unknown) =>
      this.warn(`network tear-down of ${slot.netns}: ${String(error)}`),
    );
    this.allocator.release(slot.address);
    this.slots.delete(slot);
  }

  private liveNames(): Set<string> {
    const names = new Set<string>();
    for (const slot of this.slots) names.add(slot.netns).add(slot.hostVeth).add(slot.ifb);
    return names;
  }

  private disable(name: MechanismName, reason: string): void {
    this.status[name] = { name, active: false, reason };
    this.warnOnce(name, `${name} inactive: ${reason}`);
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(message);
  }
}

class NetInstance implements LayerInstance {
  readonly address: string;
  readonly env: Record<string, string>;
  private last: Counters;
  private inner: KeptFile | undefined;
  private innerBase: Counters | undefined;
  private destroying: Promise<void> | undefined;

  constructor(
    readonly slot: Slot,
    private readonly nsenter: string,
    gateway: string,
    readonly egress: boolean,
    private readonly base: Counters,
    private readonly remove: () => Promise<void>,
  ) {
    this.address = slot.address;
    this.env = { PETRI_ADDRESS: slot.address, PETRI_GATEWAY: gateway };
    this.last = base;
  }

  wrap(command: string[]): string[] {
    return [this.nsenter, `--net=${netnsPath(this.slot.netns)}`, '--', ...command];
  }

  /**
   * Reads the instance's own eth0 counters through /proc/<pid>/net/dev, which
   * shows the instance's namespace: two interfaces instead of every veth and
   * IFB of the node, so the read after each invocation stays a few µs. The
   * function cannot change them (no capabilities).
   */
  attach(pid: number): void {
    // Opened at the first read, not now: the process enters its namespace only
    // after it starts, and an open /proc/<pid>/net file stays in the namespace
    // it was opened in. The first read is when the instance is ready.
    this.inner = new KeptFile(`/proc/${pid}/net/dev`, 1024);
  }

  async usage(): Promise<Partial<Usage>> {
    const inner = this.inner && this.readInner();
    this.innerBase ??= inner;
    if (inner && this.innerBase) {
      return {
        netRxBytes: inner.rxBytes - this.innerBase.rxBytes,
        netTxBytes: inner.txBytes - this.innerBase.txBytes,
      };
    }
    // Host veth counters: what the host side sends is what the instance receives.
    this.last = (await readCounters(this.slot.hostVeth)) ?? this.last;
    return {
      netRxBytes: this.last.txBytes - this.base.txBytes,
      netTxBytes: this.last.rxBytes - this.base.rxBytes,
    };
  }

  private readInner(): Counters | undefined {
    try {
      const text = this.inner?.read();
      return text === undefined ? undefined : countersIn(text, INSTANCE_IFNAME);
    } catch {
      return undefined; // the process is gone
    }
  }

  destroy(): Promise<void> {
    this.inner?.close();
    this.inner = undefined;
    this.destroying ??= this.remove();
    return this.destroying;
  }
}

/**
 * No IPv6 across the bridge: with IPv6 off on the bridge the node neither
 * answers nor forwards it (the firewall is IPv4 only), instances' eth0 have
 * no IPv6 address (slotInnerLines) and the isolated ports carry nothing
 * between instances anyway.
 */
async function disableBridgeIpv6(bridge: string): Promise<void> {
  // Absent when the kernel has IPv6 off altogether, which is just as good.
  await writeFile(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, '1').catch(() => undefined);
}

/**
 * The bridge answers ARP for every address of the subnet, on the isolated
 * port it was asked on (proxy_arp_pvlan), so an instance's packets to another
 * go to the node and are routed, where the firewall's forward chain lets only
 * group peers through (group-firewall.ts); without it isolated ports would
 * never let two members talk. No ICMP redirects: they would tell instances to
 * go direct, which the isolated ports forbid anyway. The kernel sends them when
 * `all` OR the device says so, so the bridge's 0 alone leaves them on (the
 * default `all` is 1): every routed member-to-member packet then took an
 * inet_peer look-up and a rate-limited ICMP send. `all` = 0 changes no other
 * interface, whose own setting (default 1) still holds for it. Proxy ARP
 * replies go at once: the kernel's default holds each one back up to 0.8 s
 * (`proxy_delay`, for a real owner to answer first, which on isolated ports
 * nobody is), queued 64 deep, so a burst of first contacts (a cluster
 * meshing) waited, or lost its ARP and failed with EHOSTUNREACH.
 */
async function routeAcrossBridge(bridge: string): Promise<void> {
  const conf = `/proc/sys/net/ipv4/conf/${bridge}`;
  await writeFile(`${conf}/send_redirects`, '0');
  await writeFile('/proc/sys/net/ipv4/conf/all/send_redirects', '0');
  await writeFile(`${conf}/proxy_arp`, '1');
  await writeFile(`${conf}/proxy_arp_pvlan`, '1');
  await writeFile(`/proc/sys/net/ipv4/neigh/${bridge}/proxy_delay`, '0');
}

function identityInstance(): LayerInstance {
  return { wrap: (command) => command, destroy: async () => undefined };
}

function inactive(name: MechanismName, reason: string): MechanismStatus {
  return { name, active: false, reason };
}

/**
 * Which mechanisms this node can use. Runs once at start, synchronously: a
 * handful of short commands (~tens of ms), so the layer can answer
 * `mechanisms()` at once.
 */
function probe(
  config: NodeConfig,
  tag: string,
  nsenter: string | undefined,
): Record<MechanismName, MechanismStatus> {
  const netns = probeNetns(config, nsenter);
  const needsNetns = (name: MechanismName): MechanismStatus =>
    inactive(name, `needs netns (${netns.reason})`);
  if (!netns.active) {
    return {
      netns,
      shaping: needsNetns('shaping'),
      firewall: needsNetns('firewall'),
      'egress-nat': needsNetns('egress-nat'),
    };
  }
  const firewall = probeFirewall();
  const egress = firewall.active ? probeEgress() : inactive('egress-nat', 'needs firewall');
  return { netns, shaping: probeShaping(config, tag), firewall, 'egress-nat': egress };
}

function probeNetns(config: NodeConfig, nsenter: string | undefined): MechanismStatus {
  if (config.isolation.network === 'off') return inactive('netns', 'off in config');
  if (process.getuid?.() !== 0) return inactive('netns', 'needs root');
  if (!succeedsSync('ip', ['-V'])) return inactive('netns', 'ip (iproute2) not found');
  if (!nsenter || !succeedsSync(nsenter, ['--version']))
    return inactive('netns', `nsenter not found in ${TRUSTED_PATH.join(':')}`);
  return { name: 'netns', active: true };
}

function probeShaping(config: NodeConfig, tag: string): MechanismStatus {
  if (config.isolation.shaping === 'off') return inactive('shaping', 'off in config');
  if (!succeedsSync('tc', ['-V'])) return inactive('shaping', 'tc (iproute2) not found');
  // Slot number 0 is never handed out, and reconcile's pattern covers it.
  const ifb = slotNames(tag, 0).ifb;
  const works =
    succeedsSync('ip', ['link', 'add', ifb, 'type', 'ifb']) &&
    succeedsSync('tc', ['qdisc', 'add', 'dev', ifb, 'root', 'tbf', ...TBF_PROBE]);
  succeedsSync('ip', ['link', 'del', ifb]);
  return works
    ? { name: 'shaping', active: true }
    : inactive('shaping', 'ifb devices or the tbf qdisc are unavailable');
}

function probeFirewall(): MechanismStatus {
  const works =
    succeedsSync('iptables', ['-w', '-S', 'FORWARD']) &&
    succeedsSync('iptables-restore', ['--version']);
  return works
    ? { name: 'firewall', active: true }
    : inactive('firewall', 'iptables (filter table) or iptables-restore not working');
}

function probeEgress(): MechanismStatus {
  return succeedsSync('iptables', ['-w', '-t', 'nat', '-S', 'POSTROUTING'])
    ? { name: 'egress-nat', active: true }
    : inactive('egress-nat', 'iptables nat table not working');
}
