// An unmodified-style web service: serves HTTP on $PORT (all addresses, so its function URL
// /fn/http-server reaches it); a JSON invoke arrives as a POST / with the event as its body.
import http from 'node:http';

let served = 0;
const server = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    served += 1;
    const event = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ served, upper: String(event.text ?? '').toUpperCase() }));
  });
});
server.listen(Number(process.env.PORT));
