import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressAllocator, formatIpv4, parseIpv4, parseSubnet } from '../../src/net/index.ts';

test('parses and formats IPv4 addresses', () => {
  assert.equal(parseIpv4('10.213.1.2'), 10 * 2 ** 24 + 213 * 2 ** 16 + 258);
  assert.equal(formatIpv4(parseIpv4('255.255.255.255')), '255.255.255.255');
  assert.throws(() => parseIpv4('10.213.1'), /not an IPv4/);
  assert.throws(() => parseIpv4('10.213.1.256'), /not an IPv4/);
});

test('a subnet is masked to its network and must leave room for hosts', () => {
  assert.deepEqual(parseSubnet('10.213.7.9/16'), {
    network: parseIpv4('10.213.0.0'),
    prefixLength: 16,
    size: 65536,
  });
  assert.throws(() => parseSubnet('10.0.0.0/31'), /prefix/);
  assert.throws(() => parseSubnet('10.0.0.0'), /not an IPv4 subnet/);
});

test('the gateway is the first host; instances start after it', () => {
  const a = new AddressAllocator('10.213.0.0/16');
  assert.equal(a.gateway, '10.213.0.1');
  assert.equal(a.cidr, '10.213.0.0/16');
  assert.equal(a.allocate(), '10.213.0.2');
  assert.equal(a.allocate(), '10.213.0.3');
  assert.equal(a.capacity, 65536 - 3);
});

test('a freed address is not reused at once (next-fit) but is reused after wrap-around', () => {
  const a = new AddressAllocator('192.168.5.0/29'); // hosts .1-.6, gateway .1
  const got = [a.allocate(), a.allocate(), a.allocate()];
  assert.deepEqual(got, ['192.168.5.2', '192.168.5.3', '192.168.5.4']);
  a.release('192.168.5.3');
  assert.equal(a.allocate(), '192.168.5.5');
  assert.equal(a.allocate(), '192.168.5.6');
  assert.equal(a.allocate(), '192.168.5.3');
  assert.throws(() => a.allocate(), /no free address/);
  assert.equal(a.inUse, 5);
});

test('never hands out the network, gateway or broadcast address', () => {
  const a = new AddressAllocator('10.0.0.0/30'); // .1 gateway, .2 the only instance
  assert.equal(a.allocate(), '10.0.0.2');
  assert.throws(() => a.allocate(), /no free address/);
  assert.ok(a.contains('10.0.0.3'));
  assert.ok(!a.contains('10.0.0.4'));
});
