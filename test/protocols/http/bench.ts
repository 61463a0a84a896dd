// Parse-time benchmark of the HTTP request reader (not run by tap).
// Usage: node --import @isaacs/ts-node-temp-fork-for-pr-2009/import test/protocols/http/bench.ts [N]
//   (or compile with tsc and run dist/test/protocols/http/bench.js). N defaults to 100000.
// Reports the median and p99 time of one `feed` of a whole typical request head (Chromium's
// navigation GET, 645 bytes, 15 field lines) into a new reader, the same for curl's 79-byte GET,
// and the throughput over the keep-alive fixtures fed whole and in 1460-byte segments.
import { HttpRequestReader } from '../../../src/protocols/http/request.js';
import { FIXTURES, fixture } from './helpers.js';

const n = Number(process.argv[2] ?? 100000);

function timeHead(label: string, head: Uint8Array): void {
  const times = new Float64Array(n);
  let sink = 0;
  for (let i = 0; i < 20000; i++) sink += new HttpRequestReader().feed(head).length; // warm-up
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const events = new HttpRequestReader().feed(head);
    times[i] = Number(process.hrtime.bigint() - t0);
    sink += events.length;
  }
  times.sort();
  const median = times[Math.floor(n / 2)]! / 1000;
  const p99 = times[Math.floor(n * 0.99)]! / 1000;
  console.log(`${label} (${head.length} B) x${n}: median ${median.toFixed(2)} us, p99 ${p99.toFixed(2)} us (${sink > 0 ? 'ok' : '?'})`);
}

const chromium = fixture('chromium-page-keepalive');
timeHead('Chromium GET head', chromium.subarray(0, 645));
timeHead('curl GET head', fixture('curl-get'));

const streams = FIXTURES.map((name) => fixture(name));
const total = streams.reduce((a, s) => a + s.length, 0);
for (const seg of [0, 1460]) {
  const rounds = 2000;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (const s of streams) {
      const reader = new HttpRequestReader();
      if (seg === 0) reader.feed(s);
      else for (let at = 0; at < s.length; at += seg) reader.feed(s.subarray(at, at + seg));
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const mb = (total * rounds) / 1e6;
  console.log(`all fixtures ${seg === 0 ? 'whole' : `in ${seg}-byte segments`}: ${(mb / seconds).toFixed(1)} MB/s`);
}
