import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import type net from 'node:net';
import { describe, it } from 'node:test';
import {
  READ_BUFFER_BYTES,
  readIntoSharedBuffer,
  readsIntoSharedBuffer,
  socketClosed,
} from '../../src/sandbox/shared-reads.ts';

/** Prints 8 MB of a known pattern and answers on fd 3 with what it reads there. */
const CHILD = `
const net = require('node:net');
const channel = new net.Socket({ fd: 3, readable: true, writable: true });
channel.on('data', (data) => channel.end('echo:' + data));
let block = Buffer.alloc(1024 * 1024);
for (let i = 0; i < block.length; i++) block[i] = (i * 7) % 251;
for (let i = 0; i < 8; i++) process.stdout.write(block);
process.stdout.write('', () => {});
`;

function expectedHash(): string {
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7) % 251;
  const hash = createHash('sha256');
  for (let i = 0; i < 8; i++) hash.update(block);
  return hash.digest('hex');
}

describe('reading a child’s pipes into one reused buffer', () => {
  it('delivers every byte as views of the one buffer, and closes as the child ends', async () => {
    const child = spawn(process.execPath, ['-e', CHILD], {
      stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
    });
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const hash = createHash('sha256');
    let views = 0;
    let chunks = 0;
    const stdout = readIntoSharedBuffer(child.stdout as net.Socket, buffer, (chunk) => {
      chunks += 1;
      if (chunk.buffer === buffer.buffer) views += 1;
      hash.update(chunk);
    });
    let echoed = '';
    const channel = readIntoSharedBuffer(child.stdio[3] as net.Socket, buffer, (chunk) => {
      echoed += chunk.toString();
    });
    channel.write('hello');
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await Promise.all([socketClosed(stdout), socketClosed(channel)]);
    assert.equal(await exited, 0);
    assert.ok(readsIntoSharedBuffer(stdout) && readsIntoSharedBuffer(channel), 'the fast path ran');
    assert.equal(views, chunks, 'no read allocated a buffer of its own');
    assert.equal(hash.digest('hex'), expectedHash());
    assert.equal(echoed, 'echo:hello');
  });

  it('reads a stream with no handle to take as usual', async () => {
    const child = spawn(process.execPath, ['-e', 'process.stdout.write("plain")'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const stdout = child.stdout as net.Socket;
    const internal = stdout as unknown as { _handle: unknown };
    const handle = internal._handle;
    internal._handle = null; // as a stream without Node's internals would be
    let text = '';
    const socket = readIntoSharedBuffer(stdout, Buffer.alloc(16), (chunk) => (text += chunk));
    assert.equal(socket, stdout);
    assert.ok(!readsIntoSharedBuffer(socket));
    internal._handle = handle;
    await new Promise((resolve) => child.on('close', resolve));
    assert.equal(text, 'plain');
  });
});
