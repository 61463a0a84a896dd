// Time per hello to parse a ClientHello fixture, and to read its JA3 hash and JA4 on top, in a
// loop of equal hellos (the case the fingerprint table serves: one client stack's connections).
// usage: node bench/scripts/fingerprints.mjs [fixture-name] [tree]   (after `npm run build`;
// fixture from test/fixtures/tls, default chrome-34-google; tree: another checkout's root)
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const name = process.argv[2] ?? 'chrome-34-google';
const root = resolve(process.argv[3] ?? '.');
const { parseClientHelloBody } = await import(`${root}/dist/src/protocols/tls/clienthello.js`);
const hex = readFileSync(`${root}/test/fixtures/tls/${name}.hex`, 'utf8').replace(/[^0-9a-f]/gi, '');
const body = Buffer.from(hex, 'hex').subarray(9); // the record header (5) and handshake header (4)
const framing = { recordVersion: 0x0301, recordCount: 1 };
const N = 200_000;
let sink = 0;
for (let round = 0; round < 3; round++) {
  let t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) sink += parseClientHelloBody(body, framing).hello.cipherSuites.length;
  const parse = Number(process.hrtime.bigint() - t) / N;
  t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const { hello } = parseClientHelloBody(body, framing);
    sink += hello.ja3Hash.length + hello.ja4.length;
  }
  const both = Number(process.hrtime.bigint() - t) / N;
  console.log(`${name}: parse ${(parse / 1000).toFixed(2)} us, with fingerprints ${(both / 1000).toFixed(2)} us`);
}
if (sink === 0) console.log('');
