/**
 * A classic-BPF seccomp program that stops an instance from creating user
 * namespaces. Without it an unprivileged process could still unshare a user
 * namespace and hold every capability inside it — the door to mounting
 * filesystems and configuring netfilter in namespaces of its own, a large
 * share of recent kernel privilege escalations. Everything else is allowed.
 *
 * Denied: unshare(2) and clone(2) with CLONE_NEWUSER; clone3(2) altogether
 * (its flags sit in memory a filter cannot read), answered with ENOSYS so
 * libc falls back to clone; every system call of a foreign ABI (i386 through
 * int 0x80, x32), whose numbers the checks below would not recognise.
 *
 * bwrap reads the program from a descriptor (`--seccomp FD`).
 */

/** System call numbers and audit arch of one native ABI. */
interface Abi {
  auditArch: number;
  clone: number;
  unshare: number;
  clone3: number;
  /** Numbers at or above this belong to another ABI on the same arch (x32). */
  foreignFrom?: number;
}

const ABIS: Partial<Record<NodeJS.Architecture, Abi>> = {
  x64: {
    auditArch: 0xc000003e,
    clone: 56,
    unshare: 272,
    clone3: 435,
    foreignFrom: 0x40000000,
  },
  arm64: { auditArch: 0xc00000b7, clone: 220, unshare: 97, clone3: 435 },
};

const CLONE_NEWUSER = 0x10000000;
const EPERM = 1;
const ENOSYS = 38;

// BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;

// Offsets in struct seccomp_data: nr, arch, then 64-bit args (low half first on little-endian).
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

type Instruction = [code: number, jt: number, jf: number, k: number];

/**
 * The program for this machine's arch, or undefined where Petri does not
 * know its system call numbers (then no filter is installed, and the
 * node reports it).
 *
 * @example userNamespaceFilter('x64')?.length // 15 instructions × 8 bytes
 */
export function userNamespaceFilter(arch: NodeJS.Architecture = process.arch): Buffer | undefined {
  const abi = ABIS[arch];
  if (!abi) return undefined;
  const program: Instruction[] = [
    [LD_W_ABS, 0, 0, ARCH],
    [JEQ_K, 1, 0, abi.auditArch],
    [RET_K, 0, 0, RET_ERRNO | EPERM],
    [LD_W_ABS, 0, 0, NR],
    // x32 system calls on x86-64; elsewhere a never-taken jump keeps the offsets the same.
    [JGE_K, 0, 1, abi.foreignFrom ?? 0xffffffff],
    [RET_K, 0, 0, RET_ERRNO | EPERM],
    [JEQ_K, 0, 1, abi.clone3],
    [RET_K, 0, 0, RET_ERRNO | ENOSYS],
    [JEQ_K, 2, 0, abi.unshare],
    [JEQ_K, 1, 0, abi.clone],
    [RET_K, 0, 0, RET_ALLOW],
    [LD_W_ABS, 0, 0, ARG0_LOW],
    [JSET_K, 0, 1, CLONE_NEWUSER],
    [RET_K, 0, 0, RET_ERRNO | EPERM],
    [RET_K, 0, 0, RET_ALLOW],
  ];
  const buffer = Buffer.alloc(program.length * 8);
  program.forEach(([code, jt, jf, k], i) => {
    // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } in host byte order.
    buffer.writeUInt16LE(code, i * 8);
    buffer.writeUInt8(jt, i * 8 + 2);
    buffer.writeUInt8(jf, i * 8 + 3);
    buffer.writeUInt32LE(k, i * 8 + 4);
  });
  return buffer;
}
