// Long fuzz run of the HTTP request reader (not run by tap; fuzz.test.ts is the short one).
//
// Usage: node --import @isaacs/ts-node-temp-fork-for-pr-2009/import test/protocols/http/fuzz.ts [COUNT] [SEED]
//   (or compile with tsc and run dist/test/protocols/http/fuzz.js). COUNT defaults to 1,000,000,
//   SEED to 1. Deterministic for a given COUNT and SEED.
//
// Each input is a fixture head or a hand-made stream (helpers.ts `fuzzSeeds`) put through 1-4
// random mutations (byte flips, inserts, deletes, duplications, spliced HTTP tokens, truncation).
// Every input is fed whole and checked (no exception, offsets in order and inside the input,
// nothing after a final event), fed again cut in two at a random point (same events), and one in
// 100 also byte by byte (same events). Prints the counts per event kind and reason, and exits 1
// with the first failing input when any check fails.
import { checkInput, feedBytewise, fuzzSeeds, mutate, prng } from './helpers.js';

const count = Number(process.argv[2] ?? 1_000_000);
const seed = Number(process.argv[3] ?? 1);
const rand = prng(seed);
const seeds = fuzzSeeds();
const kinds = new Map<string, number>();
let failures = 0;
let bytesFed = 0;
let first: string | null = null;
const started = process.hrtime.bigint();

for (let i = 0; i < count; i++) {
  let input = seeds[i % seeds.length]!;
  const rounds = 1 + Math.floor(rand() * 4);
  for (let r = 0; r < rounds; r++) input = mutate(input, rand);
  bytesFed += input.length;
  let { error, events } = checkInput(input, Math.floor(rand() * (input.length + 1)));
  if (error === null && i % 100 === 0 && JSON.stringify(feedBytewise(input)) !== JSON.stringify(events)) {
    error = 'byte by byte differs';
  }
  if (error !== null) {
    failures++;
    first ??= `input ${i}: ${error}\n${JSON.stringify(Buffer.from(input).toString('latin1'))}`;
  }
  for (const e of events) {
    const key = e.kind === 'invalid' || e.kind === 'ambiguous' ? `${e.kind}:${e.reason}` : e.kind;
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  }
}

const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(`${count} inputs (seed ${seed}), ${(bytesFed / 1e6).toFixed(1)} MB, ${seconds.toFixed(1)} s, ${failures} failures`);
for (const [key, n] of [...kinds].sort((a, b) => b[1] - a[1])) console.log(`  ${key}: ${n}`);
if (first !== null) {
  console.log(`first failure: ${first}`);
  process.exit(1);
}
