/**
 * IPv4 address allocation over the node's instance subnet (DESIGN §10).
 * The first host address belongs to the bridge (the gateway); instances get
 * the others. Allocation is next-fit rather than lowest-free so that a freed
 * address is not handed out again at once, while neighbours may still hold
 * its old ARP entry or conntrack state.
 */

export function parseIpv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${text}`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) {
      throw new Error(`not an IPv4 address: ${text}`);
    }
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

export interface Subnet {
  /** Network address as a number. */
  network: number;
  prefixLength: number;
  /** Number of addresses in the subnet, network and broadcast included. */
  size: number;
}

/** Parses `10.213.0.0/16`; the address is masked to its network. */
export function parseSubnet(cidr: string): Subnet {
  const match = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!match) throw new Error(`not an IPv4 subnet: ${cidr}`);
  const prefixLength = Number(match[2]);
  // /31 and /32 leave no room for a gateway plus an instance.
  if (prefixLength < 8 || prefixLength > 30) {
    throw new Error(`subnet prefix must be /8../30: ${cidr}`);
  }
  const size = 2 ** (32 - prefixLength);
  const network = Math.floor(parseIpv4(match[1]) / size) * size;
  return { network, prefixLength, size };
}

/**
 * Hands out instance addresses from a subnet.
 *
 * @example
 * const a = new AddressAllocator('10.213.0.0/16');
 * a.gateway;    // '10.213.0.1'
 * a.allocate(); // '10.213.0.2'
 */
export class AddressAllocator {
  readonly subnet: Subnet;
  readonly gateway: string;
  private readonly used = new Set<number>();
  private readonly first: number;
  private readonly last: number;
  private cursor: number;

  constructor(cidr: string) {
    this.subnet = parseSubnet(cidr);
    this.gateway = formatIpv4(this.subnet.network + 1);
    this.first = this.subnet.network + 2;
    this.last = this.subnet.network + this.subnet.size - 2;
    this.cursor = this.first;
  }

  /** `10.213.0.0/16` form, normalised. */
  get cidr(): string {
    return `${formatIpv4(this.subnet.network)}/${this.subnet.prefixLength}`;
  }

  get capacity(): number {
    return this.last - this.first + 1;
  }

  get inUse(): number {
    return this.used.size;
  }

  /** Next free address; throws when the subnet is exhausted. */
  allocate(): string {
    for (let tried = 0; tried < this.capacity; tried++) {
      const candidate = this.cursor;
      this.cursor = candidate >= this.last ? this.first : candidate + 1;
      if (!this.used.has(candidate)) {
        this.used.add(candidate);
        return formatIpv4(candidate);
      }
    }
    throw new Error(`no free address left in ${this.cidr}`);
  }

  /** Returns an address to the pool. Unknown or foreign addresses are ignored. */
  release(address: string): void {
    this.used.delete(parseIpv4(address));
  }

  contains(address: string): boolean {
    const value = parseIpv4(address);
    return value >= this.subnet.network && value < this.subnet.network + this.subnet.size;
  }
}
