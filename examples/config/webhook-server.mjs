// A toy decision service for examples/config/webhook.yaml: answers POST /decide with
// {"verdict":"allow"|"block","reason":"..."}. Listens on 127.0.0.1:9099 (or PORT).
import http from 'node:http';

const BLOCKED_SUFFIXES = ['.casino.test', 'gambling.test'];

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/decide') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    let info;
    try {
      info = JSON.parse(body);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const name = info.sni ?? info.host ?? '';
    const blocked = BLOCKED_SUFFIXES.some((s) => name === s.replace(/^\./, '') || name.endsWith(s));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(blocked ? { verdict: 'block', reason: 'gambling' } : { verdict: 'allow', reason: 'ok' }));
  });
});
server.keepAliveTimeout = 30_000;
server.listen(Number(process.env.PORT ?? 9099), '127.0.0.1');
