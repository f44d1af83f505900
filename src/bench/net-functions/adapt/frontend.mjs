// The load-adaptation benchmark's node side (bench net --f2f --adapt), run
// in the node's network namespace: a round-robin HTTP proxy over the current
// backends on 127.0.0.1, and an open-loop client that sends it RATE
// requests/s whatever the answers do. Backends come from a Petri group's
// membership stream (--events URL, headers in ADAPT_HEADERS) or from `join
// ADDRESS` lines on stdin (the native baseline); a joined backend is added to
// the rotation once GET /health answers (polled every 10 ms), a left one is
// dropped at once.
//
// stdin:  join ADDRESS | leave ADDRESS | load RATE SECONDS | mark
// stdout: NDJSON {"event": "ready"|"joined"|"left"|"result", ...}; times are
//         ms since the load began (performance.now() of this process).
import http from 'node:http';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { events: { type: 'string' } } });
const BUCKET_MS = 100;
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const clientAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
/** Backends in rotation, by address. */
const ready = [];
const known = new Set();
let turn = 0;
let loadStart;
const now = () => (loadStart === undefined ? 0 : performance.now() - loadStart);
const emit = (event) => process.stdout.write(JSON.stringify({ ...event, t: now() }) + '\n');

function probe(address) {
  return new Promise((resolve) => {
    const request = http.get({ host: address, port: 8080, path: '/health', timeout: 500 }, (r) => {
      r.resume();
      resolve(r.statusCode === 200);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

/** `at`: when the node saw the join (epoch ms), to tell the membership stream's own delay. */
async function join(address, at) {
  if (known.has(address)) return;
  known.add(address);
  const streamMs = at === undefined ? undefined : performance.timeOrigin + performance.now() - at;
  emit({ event: 'joined', address, ...(streamMs === undefined ? {} : { streamMs }) });
  while (known.has(address) && !(await probe(address))) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!known.has(address)) return;
  ready.push(address);
  emit({ event: 'ready', address });
}

function leave(address) {
  known.delete(address);
  const at = ready.indexOf(address);
  if (at >= 0) ready.splice(at, 1);
  emit({ event: 'left', address });
}

// ---- the proxy ----
const proxy = http.createServer((request, response) => {
  if (ready.length === 0) {
    response.writeHead(503, { 'content-length': 0 });
    response.end();
    return;
  }
  const address = ready[turn++ % ready.length];
  const upstream = http.request(
    { host: address, port: 8080, path: request.url, method: request.method, agent, timeout: 2000 },
    (answer) => {
      response.writeHead(answer.statusCode ?? 502, { 'x-backend': address });
      answer.pipe(response);
    },
  );
  upstream.on('timeout', () => upstream.destroy());
  upstream.on('error', () => {
    if (!response.headersSent) response.writeHead(502, { 'x-backend': address });
    response.end();
  });
  request.pipe(upstream);
});
await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxyPort = proxy.address().port;

// ---- the open-loop client ----
const buckets = []; // per BUCKET_MS: { ok, shed, failed }
const firstOk = new Map(); // backend -> first 200's completion time
let mark;

function record(status, backend) {
  const t = now();
  const index = Math.floor(t / BUCKET_MS);
  while (buckets.length <= index) buckets.push({ ok: 0, shed: 0, failed: 0 });
  if (status === 200) {
    buckets[index].ok += 1;
    if (backend && !firstOk.has(backend)) firstOk.set(backend, t);
  } else if (status === 503) buckets[index].shed += 1;
  else buckets[index].failed += 1;
}

function fire() {
  const request = http.get(
    { host: '127.0.0.1', port: proxyPort, path: '/work', agent: clientAgent, timeout: 3000 },
    (response) => {
      response.resume();
      response.on('end', () => record(response.statusCode, response.headers['x-backend']));
    },
  );
  request.on('timeout', () => request.destroy());
  request.on('error', () => record(0));
}

function load(rate, seconds) {
  loadStart = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    // Open loop: as many as the schedule says are due, answered or not.
    const due = Math.floor((now() / 1000) * rate);
    for (; sent < due; sent++) fire();
  }, 1);
  setTimeout(() => {
    clearInterval(timer);
    // Give the last requests their timeout, then report.
    setTimeout(() => {
      emit({
        event: 'result',
        bucketMs: BUCKET_MS,
        sent,
        mark,
        buckets,
        firstOk: Object.fromEntries(firstOk),
      });
      process.exit(0);
    }, 3100);
  }, seconds * 1000);
}

// ---- membership ----
function followStream(url) {
  const headers = JSON.parse(process.env.ADAPT_HEADERS ?? '{}');
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers }, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`${url}: ${response.statusCode}`));
        return;
      }
      let rest = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) {
          if (line.trim() === '') continue;
          const event = JSON.parse(line);
          if (event.type === 'members') for (const m of event.members) void join(m.address);
          else if (event.type === 'join') void join(event.address, event.at);
          else if (event.type === 'leave') leave(event.address);
        }
      });
      response.on('end', resolve);
      response.on('error', reject);
    });
    request.on('error', reject);
  });
}
if (values.events) {
  followStream(values.events).catch((err) => {
    process.stderr.write(`frontend: ${err.message}\n`);
    process.exit(1);
  });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, a, b] = line.trim().split(/\s+/);
  if (verb === 'join') void join(a);
  else if (verb === 'leave') leave(a);
  else if (verb === 'load') load(Number(a), Number(b));
  else if (verb === 'mark') {
    mark = now();
    emit({ event: 'mark' });
  }
});
