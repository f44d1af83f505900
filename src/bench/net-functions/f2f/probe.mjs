// One side of `petri bench net --f2f` (Boxer, Tables 1-3), the same program
// in a group member and in a plain namespace. It serves:
//   7002  echo, Nagle off (round trips of 1 KB messages)
//   7003  sends 1 byte on accept (time to first byte)
//   5201…5217  iperf3 -s (one per port: a server takes one test at a time, and
//         part (d) has up to 16 senders at one receiver)
//   7000  control, one line per connection, answered with JSON:
//         ping | rtt HOST MEASUREMENTS | ttfb HOST N
//         | iperf HOST SECONDS REVERSE(0|1) [PORT [AT]]  (AT: epoch ms to start at)
import { spawn } from 'node:child_process';
import net from 'node:net';

const MESSAGE = Buffer.alloc(1024, 7);
const PINGPONGS = 128;

const IPERF_PORTS = 17;
for (let i = 0; i < IPERF_PORTS; i++) {
  spawn('iperf3', ['-s', '-p', String(5201 + i)], { stdio: 'ignore' });
}

net
  .createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.pipe(socket);
  })
  .listen(7002, '0.0.0.0');

net
  .createServer((socket) => {
    socket.on('error', () => {});
    socket.end(Buffer.from([1]));
  })
  .listen(7003, '0.0.0.0');

function connect(host, port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Microseconds per round trip, one figure per measurement of 128 ping-pongs. */
async function rtt(host, measurements) {
  const socket = await connect(host, 7002);
  const results = [];
  let pending;
  let received = 0;
  socket.on('data', (chunk) => {
    received += chunk.length;
    if (received >= MESSAGE.length) {
      received -= MESSAGE.length;
      pending();
    }
  });
  const roundTrip = () =>
    new Promise((resolve) => {
      pending = resolve;
      socket.write(MESSAGE);
    });
  for (let i = 0; i < 16; i++) await roundTrip(); // warm-up
  for (let m = 0; m < measurements; m++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < PINGPONGS; i++) await roundTrip();
    results.push(Number(process.hrtime.bigint() - start) / 1000 / PINGPONGS);
  }
  socket.destroy();
  return results;
}

/** Milliseconds from connect() to the server's first byte, n times. */
async function ttfb(host, n) {
  const results = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      const socket = net.connect({ host, port: 7003 });
      socket.once('data', () => {
        results.push(Number(process.hrtime.bigint() - start) / 1e6);
        socket.destroy();
        resolve();
      });
      socket.once('error', reject);
    });
  }
  return results;
}

async function iperf(host, seconds, reverse, port = '5201', at = '0') {
  const wait = Number(at) - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const startedAt = Date.now();
  const args = ['-c', host, '-p', port, '-t', String(seconds), '-O', '1', '-J'];
  if (reverse === '1') args.push('-R');
  return new Promise((resolve) => {
    const child = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('close', () => {
      try {
        const end = JSON.parse(out).end;
        resolve({ mbit: end.sum_received.bits_per_second / 1e6, startedAt, endedAt: Date.now() });
      } catch {
        resolve({ error: out.slice(0, 300) });
      }
    });
  });
}

async function answer(line) {
  const [command, host, a, b, c, d] = line.trim().split(' ');
  if (command === 'ping') return { ok: true };
  if (command === 'rtt') return { us: await rtt(host, Number(a)) };
  if (command === 'ttfb') return { ms: await ttfb(host, Number(a)) };
  if (command === 'iperf') return iperf(host, Number(a), b, c, d);
  return { error: 'unknown command' };
}

net
  .createServer((socket) => {
    socket.on('error', () => {});
    let text = '';
    socket.on('data', async (chunk) => {
      text += chunk;
      if (!text.includes('\n')) return;
      const reply = await answer(text.split('\n')[0]).catch((err) => ({ error: String(err) }));
      socket.end(JSON.stringify(reply) + '\n');
    });
  })
  .listen(7000, '0.0.0.0');
