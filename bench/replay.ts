/**
 * Replay throughput and parser costs (issue 4). Builds a large capture by repeating the shared
 * captures (mergecap -a), then times `flowgate replay FILE > /dev/null` beside
 * `tshark -r FILE -Y 'tls.handshake.type==1 || http.request' > /dev/null` on the same file,
 * and measures ClientHello and request-head parse times (median, p99) over the fixtures.
 * Run: `node dist/bench/replay.js [target MB]` (no root; about a minute). Appends to bench/RESULTS.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClientHelloReader } from '../src/protocols/tls/clienthello.js';
import { HttpRequestReader } from '../src/protocols/http/request.js';

function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

const root = repo();
const targetMb = Number(process.argv[2] ?? 200);
const pcaps = join(root, '..', 'shared', 'pcaps');
const tmp = mkdtempSync(join(tmpdir(), 'fg-bench-replay-'));

function time(argv: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr?.toString().slice(0, 300)}`);
  return (performance.now() - t0) / 1000;
}

function quantiles(xs: number[]): { median: number; p99: number } {
  xs.sort((a, b) => a - b);
  return { median: xs[Math.floor(xs.length / 2)]!, p99: xs[Math.floor(xs.length * 0.99)]! };
}

/** Parse time of each fixture message, fed whole, repeated. */
function parseTimes(): string[] {
  const lines: string[] = [];
  const tlsDir = join(root, 'test', 'fixtures', 'tls');
  const hellos = readdirSync(tlsDir).filter((f) => f.endsWith('.hex'))
    .map((f) => Buffer.from(readFileSync(join(tlsDir, f), 'utf8').replace(/\s+/g, ''), 'hex'));
  const tls: number[] = [];
  for (let i = 0; i < 20000; i++) {
    const h = hellos[i % hellos.length]!;
    const t0 = performance.now();
    new ClientHelloReader().feed(h);
    tls.push((performance.now() - t0) * 1000);
  }
  const httpDir = join(root, 'test', 'fixtures', 'http');
  const heads = readdirSync(httpDir).filter((f) => f.endsWith('.bin')).map((f) => readFileSync(join(httpDir, f)))
    .map((b) => b.subarray(0, b.indexOf('\r\n\r\n') + 4)).filter((b) => b.length > 4);
  const http: number[] = [];
  for (let i = 0; i < 20000; i++) {
    const h = heads[i % heads.length]!;
    const t0 = performance.now();
    new HttpRequestReader().feed(h);
    http.push((performance.now() - t0) * 1000);
  }
  const a = quantiles(tls);
  const b = quantiles(http);
  lines.push(`| ClientHello (${hellos.length} real hellos, with JA3/JA4) | ${a.median.toFixed(1)} µs | ${a.p99.toFixed(1)} µs |`);
  lines.push(`| HTTP request head (${heads.length} real heads) | ${b.median.toFixed(1)} µs | ${b.p99.toFixed(1)} µs |`);
  return lines;
}

function main(): void {
  const inputs = readdirSync(pcaps).filter((f) => /\.pcap$/.test(f)).map((f) => join(pcaps, f));
  const one = join(tmp, 'one.pcapng');
  execFileSync('mergecap', ['-a', '-F', 'pcapng', '-w', one, ...inputs.filter((f) => !f.includes('quic'))]);
  const copies = Math.max(1, Math.ceil((targetMb * 2 ** 20) / statSync(one).size));
  const big = join(tmp, 'big.pcapng');
  execFileSync('mergecap', ['-a', '-F', 'pcapng', '-w', big, ...Array(copies).fill(one)]);
  const mb = statSync(big).size / 2 ** 20;
  process.stderr.write(`bench: ${mb.toFixed(0)} MB capture (${copies} copies)\n`);
  const fg = time([process.execPath, join(root, 'bin', 'flowgate.js'), 'replay', big]);
  const ts = time(['tshark', '-n', '-r', big, '-Y', 'tls.handshake.type==1 || http.request']);
  const text = [
    `\n## Replay and parsers, ${new Date().toISOString()}\n`,
    `Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), kernel ${os.release()}, Node ${process.version}. `
      + `Command: \`node dist/bench/replay.js ${targetMb}\`. One run.\n`,
    `| tool | seconds | MB/s of capture |`, `| --- | --- | --- |`,
    `| flowgate replay | ${fg.toFixed(2)} | ${(mb / fg).toFixed(1)} |`,
    `| tshark -Y 'tls.handshake.type==1 \\|\\| http.request' | ${ts.toFixed(2)} | ${(mb / ts).toFixed(1)} |`,
    '', `flowgate / tshark: **${(ts / fg).toFixed(1)}x** (target >= 5x) on a ${mb.toFixed(0)} MB file built from the shared captures.`, '',
    '| parse, fed whole (20k runs) | median | p99 |', '| --- | --- | --- |', ...parseTimes(), '',
  ].join('\n');
  process.stdout.write(text);
  appendFileSync(join(root, 'bench', 'RESULTS.md'), text);
  rmSync(tmp, { recursive: true, force: true });
}

main();
