/*
 * A plain HTTP server for the paused-flows test: answers every request with "ok" and closes,
 * accepts tens of thousands of idle connections (no header or request timeouts; long listen
 * backlog). Prints "ready" once listening.
 *
 *   usage: node hold-server.mjs PORT
 */
import http from 'node:http';

const port = Number(process.argv[2] ?? 8081);
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
  res.end('ok\n');
});
server.headersTimeout = 0;
server.requestTimeout = 0;
server.keepAliveTimeout = 1000;
server.listen({ port, host: '0.0.0.0', backlog: 65535 }, () => process.stdout.write('ready\n'));
process.once('SIGTERM', () => process.exit(0));
