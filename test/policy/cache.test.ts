import t from 'tap';
import { DecisionCache, type Answer } from '../../src/policy/cache.js';
import type { Decision } from '../../src/policy/types.js';

const allow: Decision = { verdict: 'allow', reason: 'webhook' };
const block: Decision = { verdict: 'block', reason: 'webhook' };
const failure: Decision = { verdict: 'block', reason: 'error' };

function deferred(): { promise: Promise<Answer>; resolve: (a: Answer) => void } {
  let resolve!: (a: Answer) => void;
  const promise = new Promise<Answer>((r) => (resolve = r));
  return { promise, resolve };
}

t.test('single flight, then cached', async (t) => {
  let now = 0;
  const cache = new DecisionCache({ ttlMs: 1000, errorTtlMs: 100, now: () => now, failure });
  const gate = deferred();
  let calls = 0;
  const fetch = () => {
    calls++;
    return gate.promise;
  };
  const first = cache.lookup('k', fetch);
  const second = cache.lookup('k', fetch);
  t.equal(first, second, 'the same promise');
  t.equal(cache.pending, 1);
  gate.resolve({ decision: allow, failed: false });
  t.equal(await first, allow);
  t.equal(cache.pending, 0);
  t.equal(cache.lookup('k', fetch), allow, 'synchronous from the cache');
  t.equal(calls, 1);
  now = 1000;
  t.equal(cache.get('k'), undefined, 'expired at the TTL');
});

t.test('ttl 0: single flight but no cache; a rejecting fetch answers the failure', async (t) => {
  const cache = new DecisionCache({ ttlMs: 0, errorTtlMs: 0, failure });
  let calls = 0;
  const fetch = async (): Promise<Answer> => {
    calls++;
    return { decision: block, failed: false };
  };
  await Promise.all([cache.lookup('k', fetch), cache.lookup('k', fetch)]);
  await cache.lookup('k', fetch);
  t.equal(calls, 2);
  t.equal(cache.size, 0);
  t.equal(await cache.lookup('r', () => Promise.reject(new Error('x'))), failure);
});

t.test('bounded: least recently used answers go first', async (t) => {
  const cache = new DecisionCache({ ttlMs: 1000, errorTtlMs: 1000, maxEntries: 3, now: () => 0, failure });
  const fill = async (key: string, decision: Decision) => cache.lookup(key, async () => ({ decision, failed: false }));
  await fill('a', allow);
  await fill('b', allow);
  await fill('c', block);
  t.equal(cache.get('a'), allow, 'touch a: b is now the oldest');
  await fill('d', block);
  t.equal(cache.size, 3);
  t.equal(cache.get('b'), undefined);
  t.equal(cache.get('a'), allow);
  t.equal(cache.get('c'), block);
  t.equal(cache.get('d'), block);
  cache.clear();
  t.equal(cache.size, 0);
});
