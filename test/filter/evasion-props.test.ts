/**
 * Property tests of the evasion rules through the real Engine (EVASION.md G1-G3, entries 1, 2, 7):
 *  - any segmentation, reordering and duplication of a ClientHello or an HTTP request head
 *    gives the decision the whole message gets;
 *  - any conflicting overlap ends in a block (`ambiguous:conflict`), or with
 *    `on_conflict: drop-packet` in the differing copy being dropped; never do both copies pass;
 *  - fakes the server discards, interleaved in any order with the real pieces, change nothing.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import {
  ALLOWED, BLOCKED, Conn, Harness, allowProblems, blockProblems, fakeOf, message, passed, ranges, settledProblems,
  FOOLINGS, type Kind, type Role, type SegSpec,
} from '../helpers/evasion.js';

const RUNS = 120;

/** One client segment of a plan: stream range, bytes, role, header tweaks. */
interface Seg {
  from: number;
  bytes: Uint8Array;
  role: Role;
  spec?: (c: Conn) => SegSpec;
}

interface Played {
  h: Harness;
  segs: Array<Seg & { id: number }>;
}

/** Plays a handshake and the segments, in the order given. */
function play(kind: Kind, family: 4 | 6, segs: Seg[], options: ConstructorParameters<typeof Harness>[0] = {}): Played {
  const h = new Harness(options);
  const c = new Conn({ family, dport: kind === 'tls' ? 443 : 80, timestamps: true });
  h.feedAll(c.handshake());
  const out = segs.map((s) => ({ ...s, id: h.feed(c.seg(s.bytes, s.from, s.spec?.(c)), s.role) }));
  return { h, segs: out };
}

/** Decisions reduced to what must not depend on segmentation. */
function summary(h: Harness): string[] {
  return h.decisions().map((d) => `${d.verdict} ${d.reason} ${d.app} ${d.sni ?? d.host ?? ''}`);
}

const reference = new Map<string, string[]>();
/** What the whole message in one segment gets. */
function whole(kind: Kind, family: 4 | 6, name: string): string[] {
  const key = `${kind}${family}${name}`;
  let r = reference.get(key);
  if (r === undefined) {
    const m = message(kind, name);
    r = summary(play(kind, family, [{ from: 0, bytes: m.bytes, role: 'real' }]).h);
    reference.set(key, r);
  }
  return r;
}

/** Byte ranges of the message that reached the server (union of passed segments), as a coverage bitmap. */
function coverage(p: Played, length: number): boolean[] {
  const got = new Array<boolean>(length).fill(false);
  for (const s of p.segs) {
    if (!passed(p.h.fate(s.id))) continue;
    for (let i = Math.max(0, s.from); i < Math.min(length, s.from + s.bytes.length); i++) got[i] = true;
  }
  return got;
}

/** Pairs of passed segments that overlap with different bytes: the server could read either. */
function inconsistencies(p: Played): string[] {
  const out: string[] = [];
  const ok = p.segs.filter((s) => passed(p.h.fate(s.id)));
  for (let i = 0; i < ok.length; i++) for (let j = i + 1; j < ok.length; j++) {
    const a = ok[i]!;
    const b = ok[j]!;
    const lo = Math.max(a.from, b.from);
    const hi = Math.min(a.from + a.bytes.length, b.from + b.bytes.length);
    for (let k = lo; k < hi; k++) {
      if (a.bytes[k - a.from] !== b.bytes[k - b.from]) {
        out.push(`packets ${a.id} and ${b.id} both passed with different bytes at ${k}`);
        break;
      }
    }
  }
  return out;
}

const arbCase = fc.record({
  kind: fc.constantFrom<Kind>('tls', 'http'),
  family: fc.constantFrom<4 | 6>(4, 6),
  name: fc.constantFrom(BLOCKED, ALLOWED),
});

/** Cut points, an order, and duplicated ranges with the positions they arrive at. */
function arbSplit(length: number) {
  return fc.record({
    cuts: fc.uniqueArray(fc.integer({ min: 1, max: length - 1 }), { maxLength: 12 }),
    keys: fc.array(fc.integer(), { minLength: 13, maxLength: 13 }),
    dups: fc.array(fc.record({ at: fc.nat({ max: length - 1 }), n: fc.integer({ min: 1, max: 80 }), pos: fc.nat() }), { maxLength: 4 }),
  });
}

/** The real pieces in the order the keys give. */
function ordered(bytes: Uint8Array, cuts: number[], keys: number[], role: Role): Seg[] {
  const pieces = ranges(bytes.length, cuts).map(([a, b], i) => ({ k: keys[i] ?? 0, i, seg: { from: a, bytes: bytes.subarray(a, b), role } }));
  pieces.sort((x, y) => x.k - y.k || x.i - y.i);
  return pieces.map((p) => p.seg);
}

/** Runs a property; a failure is one failed assertion carrying fast-check's report (seed, counterexample, error). */
function holds<T>(t: Test, what: string, prop: fc.IProperty<T>, numRuns: number): void {
  const r = fc.check(prop, { numRuns });
  const why = r.errorInstance instanceof Error ? ` -- ${r.errorInstance.message}` : '';
  t.notOk(r.failed, r.failed ? `${what}: ${fc.defaultReportMessage(r)}${why}` : `${what}: holds over ${numRuns} runs`);
}

function insertAt<T>(list: T[], pos: number, item: T): void {
  list.splice(pos % (list.length + 1), 0, item);
}

t.test('G1/G2 property: any segmentation, order and duplication decides as the whole message', async (t) => {
  const arb = arbCase.chain((k) => arbSplit(message(k.kind, k.name).bytes.length).map((s) => ({ ...k, ...s })));
  holds(t, 'segmentation, order and duplication', fc.property(arb, ({ kind, family, name, cuts, keys, dups }) => {
    const m = message(kind, name);
    // Every segment carries bytes of the message: none may pass before a block, all may after an allow.
    const role: Role = name === BLOCKED ? 'real' : 'ctl';
    const segs = ordered(m.bytes, cuts, keys, role);
    for (const d of dups) {
      const end = Math.min(m.bytes.length, d.at + d.n);
      insertAt(segs, d.pos, { from: d.at, bytes: m.bytes.subarray(d.at, end), role });
    }
    const p = play(kind, family, segs);
    const problems = [...settledProblems(p.h)];
    const got = summary(p.h);
    const want = whole(kind, family, name);
    if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`decisions ${JSON.stringify(got)}, whole message: ${JSON.stringify(want)}`);
    if (name === BLOCKED) problems.push(...blockProblems(p.h));
    else if (coverage(p, m.bytes.length).includes(false)) problems.push('some bytes of the allowed message never passed');
    if (problems.length > 0) throw new Error(problems.join('; '));
  }), RUNS);
});

/** A copy of `[at, at + n)` of the message with the bytes at `flips` (inside the name) changed. */
function arbConflict(nameAt: number, nameLen: number, length: number) {
  return fc.record({
    flips: fc.uniqueArray(fc.integer({ min: nameAt, max: nameAt + nameLen - 2 }), { minLength: 1, maxLength: 3 }),
    before: fc.integer({ min: 0, max: 40 }),
    after: fc.integer({ min: 0, max: 40 }),
    pos: fc.nat(),
  }).map((c) => {
    const lo = Math.min(...c.flips);
    const hi = Math.max(...c.flips) + 1;
    return { ...c, at: Math.max(0, lo - c.before), end: Math.min(length, hi + c.after) };
  });
}

t.test('G3 property: a conflicting overlap anywhere ends in a block, or drops the differing copy', async (t) => {
  // The differing bytes are kept inside the name (a fake name, as the tools send): bytes that
  // change the protocol's framing could end inspection (an opaque stream bypasses the queue),
  // after which flowgate no longer sees the flow at all.
  const arb = arbCase.chain((k) => {
    const m = message(k.kind, k.name);
    return fc.record({
      split: arbSplit(m.bytes.length),
      conflict: arbConflict(m.nameAt, k.name.length, m.bytes.length),
      mode: fc.constantFrom<'block' | 'drop-packet'>('block', 'drop-packet'),
    }).map((r) => ({ ...k, ...r }));
  });
  holds(t, 'conflicting overlap', fc.property(arb, ({ kind, family, name, split, conflict, mode }) => {
    const m = message(kind, name);
    const segs = ordered(m.bytes, split.cuts, split.keys, 'ctl');
    const bad = m.bytes.slice(conflict.at, conflict.end);
    for (const f of conflict.flips) bad[f - conflict.at] ^= 0x01;
    insertAt(segs, conflict.pos, { from: conflict.at, bytes: bad, role: 'ctl' });
    const p = play(kind, family, segs, { onConflict: mode });
    const problems = inconsistencies(p);
    const s = p.h.engine.stats;
    if (s.received !== s.verdicts + s.held || p.h.sink.duplicates !== 0) problems.push('verdict bookkeeping broken');
    const d = p.h.decisions();
    if (d.some((e) => e.verdict === 'allow' && (e.sni ?? e.host) === BLOCKED)) problems.push('the blocked name was allowed');
    if (mode === 'block') {
      // Blocked by the conflict, or earlier by the policy or a malformed copy (a flipped byte can
      // make the name invalid): either way the flow ends blocked, with nothing left held.
      problems.push(...settledProblems(p.h));
      const last = d.at(-1);
      if (last?.verdict !== 'block') problems.push(`last decision ${last?.verdict ?? 'none'} ${last?.reason ?? ''}`);
    } else {
      if (d.some((e) => e.reason === 'ambiguous:conflict')) problems.push('drop-packet mode blocked the flow');
      // Unless the flow was blocked before both copies met (the policy, or a malformed first copy).
      const blocked = d.some((e) => e.verdict === 'block');
      if (!blocked && p.h.counter('evasion_conflict') === 0) problems.push('the conflict was not noticed');
    }
    if (problems.length > 0) throw new Error(problems.join('; '));
  }), RUNS * 2);
});

t.test('7 property: fakes the server discards, interleaved in any order with the real pieces, change nothing', async (t) => {
  for (const [fooling, f] of Object.entries(FOOLINGS)) {
    const arb = arbCase.filter((k) => !(f.v6only && k.family === 4)).chain((k) => {
      const len = message(k.kind, k.name).bytes.length;
      return fc.record({
        cuts: fc.uniqueArray(fc.integer({ min: 1, max: len - 1 }), { maxLength: 3 }),
        keys: fc.array(fc.integer(), { minLength: 4, maxLength: 4 }),
        // Fakes start anywhere, often at the message start (the tools' favourite: a whole fake hello first).
        fakes: fc.array(fc.record({ at: fc.oneof(fc.constant(0), fc.nat({ max: len - 1 })), n: fc.integer({ min: 1, max: len }), pos: fc.nat() }), { minLength: 1, maxLength: 6 }),
      }).map((r) => ({ ...k, ...r }));
    });
    holds(t, `fooling=${fooling}`, fc.property(arb, ({ kind, family, name, cuts, keys, fakes }) => {
      const m = message(kind, name);
      const fake = fakeOf(m);
      const segs = ordered(m.bytes, cuts, keys, 'real');
      for (const x of fakes) {
        const end = Math.min(m.bytes.length, x.at + x.n);
        insertAt(segs, x.pos, { from: x.at, bytes: fake.subarray(x.at, end), role: 'fake', spec: (c) => f.spec(c, x.at) });
      }
      const p = play(kind, family, segs);
      const problems = name === BLOCKED ? blockProblems(p.h) : allowProblems(p.h);
      if (problems.length > 0) throw new Error(problems.join('; '));
    }), 60);
  }
});
