// A group member for the tests: records what Petri told it and what the
// coordinator streams, and answers one-line commands on TCP port 7000:
//   info | connect <host> <port> | coordinator <path> | events
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const startedAt = Date.now();
const env = {
  group: process.env.PETRI_GROUP,
  rank: process.env.PETRI_RANK,
  size: process.env.PETRI_SIZE,
  address: process.env.PETRI_ADDRESS,
  peersFile: process.env.PETRI_PEERS,
  coordinator: process.env.PETRI_COORDINATOR,
};
const peersAtStart = fs.readFileSync(env.peersFile, 'utf8');
const events = [];

http.get(`${env.coordinator}/v1/events`, (response) => {
  let text = '';
  response.setEncoding('utf8');
  response.on('data', (chunk) => {
    text += chunk;
    const lines = text.split('\n');
    text = lines.pop();
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line));
  });
});

function tryConnect(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port), timeout: 1500 });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.once('error', (e) => resolve(e.code));
  });
}

function fetchText(url) {
  return new Promise((resolve) => {
    const request = http.get(url, { timeout: 1500 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (c) => (body += c));
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    request.on('timeout', () => {
      request.destroy();
      resolve({ error: 'timeout' });
    });
    request.on('error', (e) => resolve({ error: e.code }));
  });
}

async function answer(line) {
  const [command, ...args] = line.trim().split(' ');
  if (command === 'info') {
    return { ...env, startedAt, peersAtStart, peersNow: fs.readFileSync(env.peersFile, 'utf8') };
  }
  if (command === 'connect') return { result: await tryConnect(args[0], args[1]) };
  if (command === 'coordinator') return fetchText(env.coordinator + args[0]);
  if (command === 'events') return { events };
  return { error: 'unknown command' };
}

net
  .createServer((socket) => {
    socket.on('error', () => {});
    let text = '';
    socket.on('data', async (chunk) => {
      text += chunk;
      if (!text.includes('\n')) return;
      socket.end(JSON.stringify(await answer(text.split('\n')[0])) + '\n');
    });
  })
  .listen(7000, '0.0.0.0');
// A second port, not opened by the spec in the port-list tests. A peer's probe closes at
// once, so the answer may meet a reset: without a listener that would kill the member.
net
  .createServer((socket) => {
    socket.on('error', () => {});
    socket.end('closed port\n');
  })
  .listen(7001, '0.0.0.0');
