import { z } from 'zod';
import type { GroupsConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import { FunctionNameSchema, fieldIssues } from '../spec/index.ts';
import type { GroupMembership } from '../sandbox/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import type { Clock, Timer } from './clock.ts';
import type { Instance } from './instance.ts';

/** `POST /v1/groups`. */
export const GroupRequestSchema = z
  .object({
    function: FunctionNameSchema,
    size: z.number().int().min(1),
    /** Members' commands start once this many members have joined (Boxer's `-n`). */
    barrier: z.number().int().min(1).optional(),
    name: FunctionNameSchema.optional(),
    /** The group's lifetime; its members are stopped after it. */
    maxDurationMs: z.number().int().min(1000).optional(),
  })
  .strict();
export type GroupRequest = z.infer<typeof GroupRequestSchema>;

export const ScaleRequestSchema = z.object({ size: z.number().int().min(1) }).strict();

/**
 * starting: its instance is being made; waiting: running, held at the
 * barrier (or not yet asked the coordinator); running: its command runs;
 * exited: its command (and so its instance) ended; stopping: being removed.
 */
export type MemberState = 'starting' | 'waiting' | 'running' | 'exited' | 'stopping';

export interface MemberView {
  rank: number;
  state: MemberState;
  instanceId?: string;
  address?: string;
  exitCode?: number | null;
  signal?: string | null;
}

export interface GroupView {
  name: string;
  function: string;
  version: number;
  size: number;
  barrier: number;
  memoryMb: number;
  createdAt: number;
  expiresAt: number;
  coordinator: string;
  members: MemberView[];
}

/** A membership change, as the coordinator streams it. */
export interface MembershipEvent {
  type: 'join' | 'leave';
  group: string;
  rank: number;
  address: string;
  /** Members joined and not gone, after the change, in rank order. */
  members: { rank: number; address: string }[];
  /** When the node saw the change (epoch ms, the node's clock), so a reader can tell the stream's delay. */
  at: number;
}

interface Member {
  rank: number;
  state: MemberState;
  instance?: Instance;
  joined: boolean;
  /** The coordinator has let its command start (the barrier was reached). */
  released: boolean;
  exit?: { code: number | null; signal: string | null };
  /** Holds the member's memory from admission until it is gone. */
  holdsMemory: boolean;
}

interface Group {
  name: string;
  id: number;
  record: FunctionRecord;
  size: number;
  barrier: number;
  createdAt: number;
  expiresAt: number;
  members: Map<number, Member>;
  barrierWaiters: (() => void)[];
  /** Once reached, the barrier stays open (members added later start at once). */
  barrierOpen: boolean;
  coordinator: string;
  listeners: Set<(event: MembershipEvent) => void>;
  /** Told when the group is removed (streams end). */
  enders: Set<() => void>;
  timer: Timer;
  removing?: Promise<void>;
}

export interface GroupDeps {
  config: GroupsConfig;
  clock: Clock;
  /** The function's current version; throws FunctionNotFound. */
  requireFunction(name: string): FunctionRecord;
  /**
   * Starts one member's instance (resolves once ready, not yet joined);
   * `onCreated` hears of it as soon as its sandbox (and address) exists.
   */
  startMember(
    record: FunctionRecord,
    membership: GroupMembership,
    onCreated: (instance: Instance) => void,
  ): Promise<Instance>;
  /** All-or-nothing memory admission against the node's budget. */
  reserveMemory(mb: number): boolean;
  releaseMemory(mb: number): void;
  /** Starts the coordinator if needed and returns its URL; throws when groups cannot run here. */
  coordinator(): Promise<string>;
}

/**
 * Function groups (DESIGN §10, Boxer): N `service` instances of one function
 * started as one, all or none, that find each other through the coordinator
 * (coordinator.ts). A member's instance lives until its command exits, the
 * group is removed or scaled down, or the group's lifetime ends.
 */
export class GroupManager {
  private readonly groups = new Map<string, Group>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly deps: GroupDeps) {}

  list(): GroupView[] {
    return [...this.groups.values()].map((group) => this.view(group));
  }

  get(name: string): GroupView {
    return this.view(this.require(name));
  }

  async create(input: unknown): Promise<GroupView> {
    const request = parseRequest(GroupRequestSchema, input, 'group request');
    if (this.closed) throw new PetriError('NodeRestarted', 'the node is shutting down');
    const { config } = this.deps;
    const record = this.deps.requireFunction(request.function);
    if (record.spec.runtime !== 'service') {
      throw new PetriError(
        'InvalidRequest',
        `function "${record.name}" has runtime "${record.spec.runtime}": group members must be "service" functions`,
      );
    }
    if (request.size > config.maxSize) {
      throw new PetriError(
        'InvalidRequest',
        `size may be at most ${config.maxSize} (node config groups.maxSize)`,
      );
    }
    const barrier = request.barrier ?? 1;
    if (barrier > request.size) {
      throw new PetriError(
        'InvalidRequest',
        `barrier (${barrier}) may not exceed size (${request.size})`,
      );
    }
    const maxDurationMs = request.maxDurationMs ?? config.defaultMaxDurationMs;
    if (maxDurationMs > config.maxDurationMs) {
      throw new PetriError(
        'InvalidRequest',
        `maxDurationMs may be at most ${config.maxDurationMs}`,
      );
    }
    const name = request.name ?? `${record.name}-${this.nextId}`;
    if (this.groups.has(name))
      throw new PetriError('GroupExists', `group "${name}" is already running`);
    const coordinator = await this.deps.coordinator();
    if (this.groups.has(name))
      throw new PetriError('GroupExists', `group "${name}" is already running`);
    this.admit(record, request.size);
    const now = this.deps.clock.now();
    const group: Group = {
      name,
      id: this.nextId++,
      record,
      size: request.size,
      barrier,
      createdAt: now,
      expiresAt: now + maxDurationMs,
      members: new Map(),
      barrierWaiters: [],
      barrierOpen: false,
      coordinator,
      listeners: new Set(),
      enders: new Set(),
      timer: this.deps.clock.setTimer(
        maxDurationMs,
        () => void this.remove(name).catch(() => undefined),
      ),
    };
    this.groups.set(name, group);
    const ranks = Array.from({ length: request.size }, (_, rank) => rank);
    try {
      await this.startMembers(group, ranks, coordinator);
    } catch (err) {
      await this.remove(name);
      throw err;
    }
    return this.view(group);
  }

  /** Adds members (new ranks after the highest) or removes the highest ranks. */
  async scale(name: string, input: unknown): Promise<GroupView> {
    const { size } = parseRequest(ScaleRequestSchema, input, 'scale request');
    const group = this.require(name);
    if (size > this.deps.config.maxSize) {
      throw new PetriError('InvalidRequest', `size may be at most ${this.deps.config.maxSize}`);
    }
    const live = [...group.members.values()].filter(
      (m) => m.state !== 'exited' && m.state !== 'stopping',
    );
    if (size > live.length) {
      const count = size - live.length;
      this.admit(group.record, count);
      const top = Math.max(-1, ...group.members.keys());
      const ranks = Array.from({ length: count }, (_, i) => top + 1 + i);
      group.size = size;
      try {
        await this.startMembers(group, ranks, await this.deps.coordinator());
      } catch (err) {
        // All or nothing for the added members too.
        await Promise.all(ranks.map((rank) => this.stopMember(group, rank)));
        for (const rank of ranks) group.members.delete(rank);
        group.size = live.length;
        throw err;
      }
    } else if (size < live.length) {
      const doomed = live.sort((a, b) => b.rank - a.rank).slice(0, live.length - size);
      group.size = size;
      await Promise.all(doomed.map((member) => this.stopMember(group, member.rank)));
      for (const member of doomed) group.members.delete(member.rank);
    }
    return this.view(group);
  }

  /** Stops every member and forgets the group. */
  remove(name: string): Promise<void> {
    const group = this.require(name);
    group.removing ??= (async () => {
      group.timer.cancel();
      await Promise.all([...group.members.keys()].map((rank) => this.stopMember(group, rank)));
      for (const waiter of group.barrierWaiters.splice(0)) waiter();
      group.listeners.clear();
      for (const end of [...group.enders]) end();
      group.enders.clear();
      this.groups.delete(name);
    })();
    return group.removing;
  }

  /**
   * Running groups and their members by state (members are instances the
   * pool does not hold, so the pool's instance counts leave them out).
   */
  memberCounts(): { groups: number; members: Record<MemberState, number> } {
    const members: Record<MemberState, number> = {
      starting: 0,
      waiting: 0,
      running: 0,
      exited: 0,
      stopping: 0,
    };
    for (const group of this.groups.values()) {
      for (const member of group.members.values()) members[member.state] += 1;
    }
    return { groups: this.groups.size, members };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.groups.keys()].map((name) => this.remove(name)));
  }

  // ---- what the coordinator asks -----------------------------------------

  /** The live instance of one member, if it has one. */
  instanceOf(groupName: string, rank: number): Instance | undefined {
    return this.groups.get(groupName)?.members.get(rank)?.instance;
  }

  /** The group and rank of the member at `address`, if any. */
  memberAt(address: string): { group: string; rank: number } | undefined {
    for (const group of this.groups.values()) {
      if (group.removing) continue;
      for (const member of group.members.values()) {
        if (member.instance?.sandbox.address === address && member.state !== 'exited') {
          return { group: group.name, rank: member.rank };
        }
      }
    }
    return undefined;
  }

  /** The joined members now (the first line of a membership stream). */
  members(groupName: string): { group: string; size: number; members: MembershipEvent['members'] } {
    const group = this.require(groupName);
    return { group: group.name, size: group.size, members: joinedMembers(group) };
  }

  /** What a member is told: its rank, the size, its address and the joined members. */
  membership(groupName: string, rank: number) {
    const group = this.require(groupName);
    return {
      group: group.name,
      rank,
      size: group.size,
      barrier: group.barrier,
      address: group.members.get(rank)?.instance?.sandbox.address ?? '',
      members: joinedMembers(group),
    };
  }

  /**
   * A member has asked to join: it counts towards the barrier, the others
   * hear of it, and it is answered once the barrier is reached.
   */
  async join(groupName: string, rank: number): Promise<ReturnType<GroupManager['membership']>> {
    const group = this.require(groupName);
    const member = group.members.get(rank);
    if (!member?.instance) throw new PetriError('NotGroupMember', 'not a member of a live group');
    if (!member.joined) {
      member.joined = true;
      this.emit(group, 'join', member);
    }
    if (group.barrierOpen || joinedCount(group) >= group.barrier) this.openBarrier(group);
    else await new Promise<void>((resolve) => group.barrierWaiters.push(resolve));
    if (group.removing) throw new PetriError('GroupNotFound', `group "${group.name}" was removed`);
    member.released = true;
    if (member.state === 'waiting') member.state = 'running';
    return this.membership(groupName, rank);
  }

  /**
   * Hears membership changes of one group until the returned function is
   * called; `onEnd`, if given, hears that the group was removed.
   */
  subscribe(
    groupName: string,
    listener: (event: MembershipEvent) => void,
    onEnd?: () => void,
  ): () => void {
    const group = this.require(groupName);
    group.listeners.add(listener);
    if (onEnd) group.enders.add(onEnd);
    return () => {
      group.listeners.delete(listener);
      if (onEnd) group.enders.delete(onEnd);
    };
  }

  // ---- internals ----------------------------------------------------------

  private require(name: string): Group {
    const group = this.groups.get(name);
    if (!group) throw new PetriError('GroupNotFound', `no group named "${name}"`);
    return group;
  }

  private admit(record: FunctionRecord, count: number): void {
    const mb = record.spec.memoryMb * count;
    if (!this.deps.reserveMemory(mb)) {
      throw new PetriError(
        'CapacityExceeded',
        `${count} member(s) of ${record.spec.memoryMb} MB (${mb} MB) do not fit in the node's memory budget`,
        { neededMb: mb },
      );
    }
  }

  /** Starts members in parallel; the first failure fails the lot (the caller stops the rest). */
  private async startMembers(group: Group, ranks: number[], coordinator: string): Promise<void> {
    for (const rank of ranks) {
      const member: Member = {
        rank,
        state: 'starting',
        joined: false,
        released: false,
        holdsMemory: true,
      };
      group.members.set(rank, member);
    }
    const results = await Promise.allSettled(
      ranks.map(async (rank) => {
        const member = group.members.get(rank)!;
        const membership = { name: group.name, id: group.id, rank, coordinator };
        // Known by its address from the start: its host may ask the coordinator before `ready` lands.
        const instance = await this.deps.startMember(group.record, membership, (created) => {
          member.instance = created;
          created.sandbox.on('exit', (exit) => this.onExit(group, member, exit));
        });
        if (member.state === 'stopping' || group.removing) {
          await instance.stop();
          return;
        }
        if (member.state === 'starting') member.state = member.released ? 'running' : 'waiting';
      }),
    );
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private onExit(
    group: Group,
    member: Member,
    exit: { code: number | null; signal: string | null },
  ): void {
    member.exit = { code: exit.code, signal: exit.signal };
    const wasJoined = member.joined;
    if (member.state !== 'stopping') member.state = 'exited';
    this.freeMemory(group, member);
    if (wasJoined) {
      member.joined = false;
      this.emit(group, 'leave', member, member.instance?.sandbox.address);
    }
  }

  private async stopMember(group: Group, rank: number): Promise<void> {
    const member = group.members.get(rank);
    if (!member) return;
    if (member.state !== 'exited') member.state = 'stopping';
    await member.instance?.stop();
    this.freeMemory(group, member);
  }

  private freeMemory(group: Group, member: Member): void {
    if (!member.holdsMemory) return;
    member.holdsMemory = false;
    this.deps.releaseMemory(group.record.spec.memoryMb);
  }

  private openBarrier(group: Group): void {
    group.barrierOpen = true;
    for (const waiter of group.barrierWaiters.splice(0)) waiter();
  }

  private emit(
    group: Group,
    type: MembershipEvent['type'],
    member: Member,
    address?: string,
  ): void {
    const event: MembershipEvent = {
      type,
      group: group.name,
      rank: member.rank,
      address: address ?? member.instance?.sandbox.address ?? '',
      members: joinedMembers(group),
      at: this.deps.clock.now(),
    };
    for (const listener of group.listeners) listener(event);
  }

  private view(group: Group): GroupView {
    return {
      name: group.name,
      function: group.record.name,
      version: group.record.version,
      size: group.size,
      barrier: group.barrier,
      memoryMb: group.record.spec.memoryMb,
      createdAt: group.createdAt,
      expiresAt: group.expiresAt,
      coordinator: group.coordinator,
      members: [...group.members.values()]
        .sort((a, b) => a.rank - b.rank)
        .map((member) => ({
          rank: member.rank,
          state: member.state,
          instanceId: member.instance?.id,
          address: member.instance?.sandbox.address,
          ...(member.exit ? { exitCode: member.exit.code, signal: member.exit.signal } : {}),
        })),
    };
  }
}

function joinedMembers(group: Group): { rank: number; address: string }[] {
  return [...group.members.values()]
    .filter((member) => member.joined && member.instance?.sandbox.address)
    .sort((a, b) => a.rank - b.rank)
    .map((member) => ({ rank: member.rank, address: member.instance!.sandbox.address! }));
}

function joinedCount(group: Group): number {
  let count = 0;
  for (const member of group.members.values()) if (member.joined) count += 1;
  return count;
}

function parseRequest<T>(schema: z.ZodType<T, unknown>, value: unknown, what: string): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issues = fieldIssues(result.error);
  const text = issues.map((i) => `${i.field} ${i.message}`).join('; ');
  throw new PetriError('InvalidRequest', `invalid ${what}: ${text}`, { issues });
}
