/**
 * Mutation fuzzing in the test run: 200,000 mutated fixture hellos, no exception, and the same
 * results when fed in random chunks (every 16th input). fuzz.ts runs the long version.
 */
import t from 'tap';
import { fuzz } from './mutate.js';

t.test('200,000 mutated hellos: no exception, chunking never changes the result', async (t) => {
  const started = process.hrtime.bigint();
  const report = fuzz(200_000, 0x5eed, 16);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(report.inputs, 200_000);
  t.equal(report.exceptions, 0, 'no exception');
  t.equal(report.chunkMismatches, 0, 'random chunks agree with the whole feed');
  t.same(report.failures, []);
  // The mutations reach every outcome, so the run exercises more than one path.
  for (const kind of ['done', 'invalid', 'needMore', 'notTls'] as const) t.ok(report.kinds[kind] > 0, `some ${kind}`);
  t.comment(`${report.inputs} inputs in ${ms.toFixed(0)} ms: ${JSON.stringify(report.kinds)}`);
});
