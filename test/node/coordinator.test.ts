import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CONNECTIONS_PER_ADDRESS, Coordinator } from '../../src/node/coordinator.ts';
import type { GroupManager } from '../../src/node/groups.ts';

/** Only `memberAt` is reached by these tests: nobody here is a member. */
const noGroups = { memberAt: () => undefined } as unknown as GroupManager;

/** Resolves with whether the server closed the socket within `ms`. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('the coordination service', () => {
  const coordinator = new Coordinator(noGroups);
  let port = 0;
  before(async () => {
    const url = await coordinator.listen('127.0.0.1', 0);
    port = Number(new URL(url).port);
  });
  after(() => coordinator.close());

  it('closes connections of one address beyond its cap, and admits again once some close', async () => {
    const held = await Promise.all(
      Array.from({ length: CONNECTIONS_PER_ADDRESS }, () => connect(port)),
    );
    const extra = await connect(port);
    assert.equal(await closedWithin(extra, 2_000), true, 'the connection over the cap is closed');
    for (const socket of held.slice(1)) assert.equal(socket.destroyed, false);
    const gone = closedWithin(held[0], 2_000);
    held[0].destroy();
    await gone;
    // The server counts the close on its side: give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const again = await connect(port);
    again.write('GET /v1/self HTTP/1.1\r\nhost: x\r\n\r\n');
    const answer = await new Promise<string>((resolve) =>
      again.once('data', (d) => resolve(String(d))),
    );
    assert.match(answer, /^HTTP\/1\.1 4\d\d/);
    assert.match(answer, /NotGroupMember/);
    for (const socket of [...held, again]) socket.destroy();
  });
});
