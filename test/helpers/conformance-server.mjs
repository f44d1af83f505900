// A plain node:http app for the function URL conformance test: it runs
// unmodified both on its own and as an `http` function behind Petri.
import http from 'node:http';

const BIG_CHUNK = Buffer.alloc(64 * 1024, 'x');

function echo(request, response, body) {
  response.setHeader('content-type', 'application/json');
  response.setHeader('x-multi', ['one', 'two']);
  response.end(
    JSON.stringify({
      method: request.method,
      url: request.url,
      headers: request.rawHeaders,
      body: body.toString('base64'),
    }),
  );
}

const routes = {
  '/hang': () => {},
  '/exit': () => process.exit(3),
  '/status/99': (request, response) => {
    // A status line Node's own writeHead refuses, written raw.
    response.socket.end('HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n');
  },
  '/status/204': (request, response) => response.writeHead(204, { 'x-kind': 'empty' }).end(),
  '/status/304': (request, response) => response.writeHead(304, { etag: '"v1"' }).end(),
  '/status/418': (request, response) =>
    response.writeHead(418, "I'm a teapot").end('short and stout'),
  '/early-hints': (request, response) => {
    response.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    response.end('hinted');
  },
  '/redirect': (request, response) => response.writeHead(302, { location: '/echo' }).end(),
  '/cookies': (request, response) => {
    response.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
    response.end('cookies');
  },
  '/binary': (request, response, body) => {
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    response.end(Buffer.from(body.map((byte) => 255 - byte)));
  },
  '/big': (request, response) => {
    // 2 MiB, streamed in chunks with backpressure, no content-length.
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    let left = 32;
    const more = () => {
      while (left > 0) {
        left -= 1;
        if (!response.write(BIG_CHUNK)) return void response.once('drain', more);
      }
      response.end();
    };
    more();
  },
  '/huge': (request, response) => {
    // 7 MiB streamed, no content-length: past the node's 6 MiB response limit.
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    let left = 112;
    const more = () => {
      while (left > 0) {
        left -= 1;
        if (!response.write(BIG_CHUNK)) return void response.once('drain', more);
      }
      response.end();
    };
    more();
  },
  '/huge-declared': (request, response) => {
    response.writeHead(200, { 'content-length': String(7 * 1024 * 1024) });
    response.end(Buffer.alloc(7 * 1024 * 1024));
  },
  '/hop': (request, response) => {
    response.writeHead(200, {
      connection: 'x-private',
      'x-private': 'secret',
      'keep-alive': 'timeout=5',
    });
    response.end('hop');
  },
};

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const body = Buffer.concat(chunks);
    const route = routes[request.url.split('?')[0]] ?? echo;
    route(request, response, body);
  });
});
server.listen(Number(process.env.PORT), () => console.log(`listening on ${server.address().port}`));
