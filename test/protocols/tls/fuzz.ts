/**
 * Long mutation-fuzz run of the TLS ClientHello reader (the test suite runs 200,000 inputs).
 *
 * Usage, from the repository root:
 *   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs test/protocols/tls/fuzz.ts [COUNT] [SEED]
 * or, after `npm run build:ts`:
 *   node dist/test/protocols/tls/fuzz.js [COUNT] [SEED]
 * COUNT defaults to 1,000,000 mutated inputs, SEED to 1. Every input is a fixture stream from
 * test/fixtures/tls with 1-4 random mutations (bit flips, interesting length values, inserted,
 * deleted and duplicated ranges, truncation, splices from another fixture); it is fed whole, and
 * every 8th input also in random chunks, which must give the same results. Prints one JSON line
 * with the counts and the first failures (hex input and error), and exits 1 if any input threw
 * or chunking changed a result.
 */
import { fuzz } from './mutate.js';

const count = Number(process.argv[2] ?? 1_000_000);
const seed = Number(process.argv[3] ?? 1);
const started = process.hrtime.bigint();
const report = fuzz(count, seed);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ seed, seconds: Number(seconds.toFixed(1)), ...report }));
process.exitCode = report.exceptions === 0 && report.chunkMismatches === 0 ? 0 : 1;
