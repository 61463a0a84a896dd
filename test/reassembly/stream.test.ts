import t from 'tap';
import fc from 'fast-check';
import { StreamReassembler } from '../../src/reassembly/stream.js';
import { seqAdd, seqDiff } from '../../src/reassembly/seq.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

t.test('sequence arithmetic wraps', async (t) => {
  t.equal(seqAdd(0xffffffff, 2), 1);
  t.equal(seqDiff(1, 0xffffffff), 2);
  t.equal(seqDiff(0xffffffff, 1), -2);
});

const table: Array<{ name: string; isn: number; in: Array<[number, string]>; want: string; kinds?: string[] }> = [
  { name: 'in order', isn: 100, in: [[100, 'hel'], [103, 'lo']], want: 'hello' },
  { name: 'reordered', isn: 100, in: [[103, 'lo'], [100, 'hel']], want: 'hello', kinds: ['ok', 'ok'] },
  { name: 'exact duplicate', isn: 100, in: [[100, 'hel'], [100, 'hel'], [103, 'lo']], want: 'hello', kinds: ['ok', 'duplicate', 'ok'] },
  { name: 'overlap same bytes', isn: 100, in: [[100, 'hel'], [101, 'ello']], want: 'hello' },
  { name: 'overlap into pending', isn: 100, in: [[104, 'o!'], [102, 'llo'], [100, 'he']], want: 'hello!' },
  { name: 'wraparound', isn: 0xfffffffe, in: [[0xfffffffe, 'ab'], [0, 'cd']], want: 'abcd' },
  { name: 'below base trimmed', isn: 100, in: [[90, '0123456789hel'], [103, 'lo']], want: 'hello' },
];

for (const c of table) {
  t.test(c.name, async (t) => {
    const r = new StreamReassembler(c.isn);
    const kinds: string[] = [];
    for (const [seq, s] of c.in) kinds.push(r.insert(seq, enc(s)).kind);
    t.equal(dec(r.view()), c.want);
    if (c.kinds) t.same(kinds, c.kinds);
  });
}

t.test('conflicting overlap is reported and not stored', async (t) => {
  const r = new StreamReassembler(100);
  r.insert(100, enc('hello'));
  const res = r.insert(102, enc('LLo'));
  t.same(res, { kind: 'conflict', seq: 102 });
  t.equal(dec(r.view()), 'hello');
  const r2 = new StreamReassembler(100);
  r2.insert(105, enc('world'));
  t.equal(r2.insert(103, enc('xxWX')).kind, 'conflict');
  t.equal(r2.outOfOrderBytes, 5);
});

t.test('limits', async (t) => {
  const r = new StreamReassembler(0, { maxOutOfOrderBytes: 10, maxRetainedBytes: 20 });
  t.same(r.insert(5, new Uint8Array(11)), { kind: 'limit', which: 'outOfOrder' });
  t.equal(r.insert(5, new Uint8Array(10)).kind, 'ok');
  t.same(r.insert(0, new Uint8Array(21)), { kind: 'limit', which: 'retained' });
  t.equal(r.insert(0, new Uint8Array(5)).kind, 'ok');
  t.equal(r.offset, 15);
  r.release(15);
  t.equal(r.retainedBytes, 0);
  t.equal(r.insert(15, new Uint8Array(20)).kind, 'ok');
});

t.test('release then retransmission below the retained base is a duplicate, not a conflict', async (t) => {
  const r = new StreamReassembler(0);
  r.insert(0, enc('abcdef'));
  r.release(4);
  t.same(r.insert(0, enc('XXXX')), { kind: 'duplicate', retained: false });
  t.equal(r.insert(2, enc('XXef')).kind, 'duplicate');
  t.equal(r.insert(4, enc('eX')).kind, 'conflict');
});

// Property: any segmentation, reordering and duplication reassembles to exactly the original.
t.test('property: random segmentation, order and duplication', async (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 600 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (data, isn, cuts, order, dups) => {
        const segs: Array<[number, Uint8Array]> = [];
        let off = 0;
        let i = 0;
        while (off < data.length) {
          const len = Math.min(cuts[i++ % cuts.length]!, data.length - off);
          segs.push([off, data.subarray(off, off + len)]);
          off += len;
        }
        for (const d of dups) segs.push(segs[d % segs.length]!);
        // a permutation driven by `order`
        for (let k = segs.length - 1; k > 0; k--) {
          const j = (order[k % Math.max(1, order.length)] ?? 0) % (k + 1);
          [segs[k], segs[j]] = [segs[j]!, segs[k]!];
        }
        const r = new StreamReassembler(isn, { maxOutOfOrderBytes: 1 << 20, maxRetainedBytes: 1 << 20 });
        for (const [o, s] of segs) {
          const res = r.insert(seqAdd(isn, o), s);
          if (res.kind === 'conflict' || res.kind === 'limit') return false;
        }
        return Buffer.compare(Buffer.from(r.view()), Buffer.from(data)) === 0 && r.outOfOrderBytes === 0;
      },
    ),
    { numRuns: 500 },
  );
  t.pass('reassembled exactly');
});

t.test('property: any conflicting overlap is detected', async (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 2, maxLength: 300 }),
      fc.nat(),
      fc.nat(),
      fc.boolean(),
      (data, a, b, fakeFirst) => {
        const pos = a % data.length;
        const len = 1 + (b % (data.length - pos));
        const fake = data.slice(pos, pos + len);
        fake[b % len] ^= 0xff;
        const r = new StreamReassembler(1000);
        const real: Array<[number, Uint8Array]> = [[0, data]];
        const order: Array<[number, Uint8Array]> = fakeFirst ? [[pos, fake], ...real] : [...real, [pos, fake]];
        const kinds = order.map(([o, s]) => r.insert(1000 + o, s).kind);
        return kinds.includes('conflict');
      },
    ),
    { numRuns: 500 },
  );
  t.pass('conflicts detected');
});
