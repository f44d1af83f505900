// The load-adaptation benchmark's backend (bench net --f2f --adapt): an HTTP
// server on <address>:8080 that serves one request at a time, each taking
// SERVICE_MS (a timer, not CPU: capacity per backend is 1000 / SERVICE_MS
// requests/s however busy the shared cores are). More than QUEUE waiting is
// 503 at once, so an overloaded backend sheds load instead of queueing it.
// GET /health answers at once. Runs as a Petri group member (PETRI_ADDRESS)
// or as a plain process (argv[2]).
import http from 'node:http';

const address = process.argv[2] ?? process.env.PETRI_ADDRESS;
const serviceMs = Number(process.env.SERVICE_MS ?? 10);
const queueLimit = Number(process.env.QUEUE ?? 8);
const waiting = [];
let busy = false;

function next() {
  const job = waiting.shift();
  if (!job) {
    busy = false;
    return;
  }
  busy = true;
  setTimeout(() => {
    job.writeHead(200, { 'x-backend': address, 'content-length': 2 });
    job.end('ok');
    next();
  }, serviceMs);
}

http
  .createServer((request, response) => {
    request.resume();
    if (request.url === '/health') {
      response.writeHead(200, { 'x-backend': address, 'content-length': 2 });
      response.end('ok');
      return;
    }
    if (waiting.length >= queueLimit) {
      response.writeHead(503, { 'x-backend': address, 'content-length': 4 });
      response.end('busy');
      return;
    }
    waiting.push(response);
    if (!busy) next();
  })
  .listen(8080, address);
