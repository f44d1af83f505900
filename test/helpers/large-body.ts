import net from 'node:net';
import type { Daemon } from '../../src/harness/index.ts';

/**
 * Sends request headers announcing `length` bytes plus a little of the body
 * and returns the raw reply. The node must answer an oversized body from its
 * headers alone; a client streaming the whole body may see the socket close
 * under it (EPIPE), which says nothing about the node.
 */
export function announceLargeBody(
  daemon: Daemon,
  method: 'POST' | 'PUT',
  url: string,
  length: number,
): Promise<string> {
  const { hostname, port } = new URL(daemon.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('}}')) socket.destroy();
    });
    socket.on('close', () => resolve(reply));
    socket.on('error', reject);
    socket.write(
      `${method} ${url} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
        `Authorization: ${daemon.headers.authorization}\r\n` +
        `Content-Length: ${length}\r\n\r\n{"blob":"xxxx`,
    );
  });
}
