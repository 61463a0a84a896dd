// Random mutations of the fixtures (seeded, so a failure repeats): the reader never throws, its
// events stay consistent, and one in 20 inputs also reads the same when split in two.
// test/protocols/http/fuzz.ts runs the same check over 1,000,000+ inputs.
import t from 'tap';
import { checkInput, fuzzSeeds, mutate, prng } from './helpers.js';

t.test('200,000 mutated streams: no exception, consistent events', async (t) => {
  const rand = prng(20261126);
  const seeds = fuzzSeeds();
  const total = 200_000;
  let failures = 0;
  let first: string | null = null;
  const kinds = new Map<string, number>();
  for (let i = 0; i < total; i++) {
    let input = seeds[i % seeds.length]!;
    const rounds = 1 + Math.floor(rand() * 4);
    for (let r = 0; r < rounds; r++) input = mutate(input, rand);
    const cut = i % 20 === 0 ? Math.floor(rand() * (input.length + 1)) : undefined;
    const { error, events } = checkInput(input, cut);
    if (error !== null) {
      failures++;
      first ??= `${error}\ninput: ${JSON.stringify(Buffer.from(input).toString('latin1'))}`;
    }
    for (const e of events) {
      const key = e.kind === 'invalid' || e.kind === 'ambiguous' ? `${e.kind}:${e.reason}` : e.kind;
      kinds.set(key, (kinds.get(key) ?? 0) + 1);
    }
  }
  t.equal(failures, 0, first ?? 'no failure');
  // The mutations reach the interesting states, not only the first-byte rejection.
  for (const key of ['request', 'bodyEnd', 'tunnel', 'invalid:bad chunk size', 'ambiguous:obs-fold', 'ambiguous:bare-cr', 'invalid:h2 preface']) {
    t.ok((kinds.get(key) ?? 0) > 0, `reached ${key} (${kinds.get(key) ?? 0})`);
  }
});
