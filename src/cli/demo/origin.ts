/**
 * The demo's origin server, run as a script inside the server namespace (never imported):
 * `node origin.js CERT KEY`. HTTP on port 80 and HTTPS on 443, any host name, keep-alive on.
 * `GET /PATH` answers `hello from HOST\n` (`hello from HOST PATH\n` for other paths).
 * It prints `{"type":"ready"}` once both ports listen, then one JSON line per request it
 * answered, which is how the demo shows that a blocked request never reached it.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';

const [certFile, keyFile] = process.argv.slice(2);
if (certFile === undefined || keyFile === undefined) {
  process.stderr.write('usage: origin.js CERT KEY\n');
  process.exit(2);
}

function handler(tls: boolean) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const host = (req.headers.host ?? '-').replace(/:\d+$/, '');
    const path = req.url ?? '/';
    process.stdout.write(JSON.stringify({ type: 'request', tls, host, method: req.method, path,
      port: req.socket.remotePort }) + '\n');
    const body = `hello from ${host}${path === '/' ? '' : ` ${path}`}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}

const plain = http.createServer({ keepAliveTimeout: 30_000 }, handler(false));
const secure = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), keepAliveTimeout: 30_000 },
  handler(true));
let listening = 0;
for (const [server, port] of [[plain, 80], [secure, 443]] as const) {
  server.on('error', (err) => {
    process.stderr.write(`origin: port ${port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(port, '0.0.0.0', () => {
    if (++listening === 2) process.stdout.write('{"type":"ready"}\n');
  });
}
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
