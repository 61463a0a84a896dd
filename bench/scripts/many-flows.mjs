/*
 * The client of the paused-flows test: opens COUNT TCP connections to HOST:PORT (at most
 * PARALLEL handshakes at a time), sends one HTTP request on each as soon as it connects, and
 * waits for every response or DEADLINE_MS. Progress goes to stdout as JSON lines:
 *
 *   {"type":"connected","connected":N,"errors":E,"ms":T}   once every connection was tried
 *   {"type":"done","responses":R,"errors":E,"connected":N,"first_ms":..,"last_ms":..,"codes":{..}}
 *
 *   usage: node many-flows.mjs HOST PORT COUNT PARALLEL DEADLINE_MS HOSTNAME
 */
import net from 'node:net';

const [host, portArg, countArg, parallelArg, deadlineArg, hostname = 'allowed.test'] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);
const parallel = Number(parallelArg ?? 256);
const deadlineMs = Number(deadlineArg ?? 60000);
const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`);
const started = performance.now();
const ms = () => Math.round(performance.now() - started);

let connected = 0;
let responses = 0;
let errors = 0;
let settled = 0;
let firstMs;
let lastMs;
const codes = {};
const sockets = new Set();

function finish() {
  process.stdout.write(`${JSON.stringify({ type: 'done', responses, errors, connected, first_ms: firstMs ?? null,
    last_ms: lastMs ?? null, codes, ms: ms() })}\n`, () => process.exit(0));
}

function open() {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sockets.add(sock);
    let answered = false;
    let head = '';
    let done = false;
    const settle = () => {
      if (done) return;
      done = true;
      sockets.delete(sock);
      if (++settled === count) finish();
    };
    sock.setNoDelay(true);
    sock.once('connect', () => {
      connected++;
      sock.write(request);
      resolve();
    });
    sock.on('data', (d) => {
      if (answered) return;
      head += d.toString('latin1');
      if (head.includes('\r\n')) {
        answered = true;
        responses++;
        const t = ms();
        firstMs ??= t;
        lastMs = t;
        sock.end();
      }
    });
    sock.on('error', (err) => {
      codes[err.code ?? 'error'] = (codes[err.code ?? 'error'] ?? 0) + 1;
      if (!answered) errors++;
      resolve();
      settle();
    });
    sock.on('close', settle);
  });
}

setTimeout(() => {
  for (const s of sockets) s.destroy();
  codes.deadline = sockets.size;
  finish();
}, deadlineMs).unref();

let next = 0;
async function lane() {
  while (next < count) {
    next++;
    await open();
  }
}
await Promise.all(Array.from({ length: Math.min(parallel, count) }, lane));
process.stdout.write(`${JSON.stringify({ type: 'connected', connected, errors, ms: ms() })}\n`);
// Keep the process alive until finish() exits it.
setInterval(() => {}, 1 << 30);
