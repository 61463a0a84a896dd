/**
 * Memory bounds under floods (EVASION.md G2, issue 3), through the real Engine: half-open flows,
 * out-of-order data that never fills its hole, paused flows the policy never answers, messages
 * that never complete. Each limit applies its configured verdict with a counter; the flows that
 * stay within bounds keep being served, and every packet still gets exactly one verdict.
 */
import t from 'tap';
import type { DecideFn } from '../../src/filter/types.js';
import type { EngineLimits, EngineOptions } from '../../src/filter/options.js';
import {
  ALLOWED, BLOCKED, Conn, Harness, allowProblems, blockProblems, byName, message, passed, settledProblems,
  type Kind,
} from '../helpers/evasion.js';

function limits(l: Partial<EngineLimits>): EngineLimits {
  return l as EngineLimits; // engineOptions fills in the rest
}

/** A fresh conversation on its own source port. */
function conn(kind: Kind = 'tls', o: { sport?: number } = {}): Conn {
  return new Conn({ dport: kind === 'tls' ? 443 : 80, ...o });
}

/** Sends a whole message on an established conversation. */
function send(h: Harness, c: Conn, bytes: Uint8Array, role: 'real' | 'ctl' = 'real'): number {
  const id = h.feed(c.seg(bytes), role);
  c.advance(bytes.length);
  return id;
}

t.test('half-open flood (SYNs only): the table stays within max_flows, evictions are counted, other flows are served', async (t) => {
  for (const name of [BLOCKED, ALLOWED]) {
    const h = new Harness({ limits: limits({ maxFlows: 64 }) });
    const m = message('tls', name);
    // A: handshake done, idle during the flood (evictable). B: half a hello held (busy, kept).
    const a = conn();
    h.feedAll(a.handshake());
    const b = conn('http');
    h.feedAll(b.handshake());
    const mb = message('http', name);
    const p = mb.nameAt + 3;
    h.feed(b.seg(mb.bytes.subarray(0, p)), 'real');
    const flood: number[] = [];
    for (let i = 0; i < 2000; i++) flood.push(h.feed(new Conn({ sport: 1024 + i, cisn: i * 7919 }).syn()));
    t.ok(h.engine.table.size <= 64, `${name}: table within max_flows (${h.engine.table.size})`);
    t.ok(h.counter('evicted') >= 2000 - 64, `${name}: evictions counted (${h.counter('evicted')})`);
    t.ok(flood.every((id) => h.fate(id) === 'accept'), `${name}: every SYN of the flood passed at once`);
    // B completes its request; A (evicted: its flow is picked up again midstream) sends its hello;
    // C is a new connection after the flood.
    h.feed(b.seg(mb.bytes.subarray(p), p), 'real');
    b.advance(mb.bytes.length);
    send(h, a, m.bytes);
    const c = conn();
    h.feedAll(c.handshake());
    send(h, c, m.bytes);
    const names = h.decisions().map((d) => [d.sni ?? d.host, d.verdict]);
    const want = name === BLOCKED ? 'block' : 'allow';
    t.same(names, [[name, want], [name, want], [name, want]], `${name}: the busy flow, the evicted one and a new one are all decided`);
    t.same(name === BLOCKED ? blockProblems(h) : allowProblems(h), [], `${name}: outcome`);
  }
});

t.test('out-of-order data that never fills its hole: max_ooo_bytes_per_flow gives on_limit to that flow only', async (t) => {
  for (const onLimit of ['block', 'allow'] as const) {
    const h = new Harness({ onLimit, limits: limits({ maxOutOfOrderBytesPerFlow: 2048 }) });
    const junk = new Uint8Array(1000).fill(0x16);
    const attackers: number[][] = [];
    for (let i = 0; i < 50; i++) {
      const c = conn('tls', { sport: 30000 + i });
      h.feedAll(c.handshake());
      // Three segments past a 100-byte hole that never comes: the third crosses the limit.
      attackers.push([100, 1100, 2100].map((at) => h.feed(c.seg(junk, at))));
    }
    t.equal(h.counter('limit_outOfOrder'), 50, `${onLimit}: one limit per flow, counted`);
    const limited = h.decisions().filter((d) => d.reason === 'limit');
    t.equal(limited.length, 50, `${onLimit}: each gets a limit decision`);
    t.ok(limited.every((d) => d.verdict === onLimit), `${onLimit}: the configured verdict`);
    const fates = attackers.flat().map((id) => h.fate(id));
    t.ok(fates.every((f) => (onLimit === 'block' ? !passed(f) : passed(f))), `${onLimit}: their held data got it (${[...new Set(fates)]})`);
    // A well-behaved flow in the middle of it all.
    const c = conn();
    h.feedAll(c.handshake());
    send(h, c, message('tls', BLOCKED).bytes);
    t.match(h.decisions().at(-1), { sni: BLOCKED, verdict: 'block', reason: 'rule:test' }, `${onLimit}: another flow is still decided by the policy`);
    t.same(settledProblems(h), [], `${onLimit}: every packet settled once`);
  }
});

t.test('max_held_bytes_total: the flow that would exceed it gets on_limit; flows already within it are served', async (t) => {
  const h = new Harness({ limits: limits({ maxHeldBytesTotal: 16_000 }), timeouts: { synS: 30, establishedS: 3600, closingS: 30, inspectingS: 30 } });
  const junk = new Uint8Array(1000).fill(0x47);
  for (let i = 0; i < 15; i++) {
    const c = conn('http', { sport: 31000 + i });
    h.feedAll(c.handshake());
    h.feed(c.seg(junk, 100)); // 15 000 bytes held behind holes
  }
  // A normal flow holds half a request (fits), then one more stalled flow pushes past the total.
  const m = message('http', BLOCKED);
  const good = conn('http');
  h.feedAll(good.handshake());
  const p = m.nameAt + 2;
  h.feed(good.seg(m.bytes.subarray(0, p)), 'real');
  const over = conn('http', { sport: 31999 });
  h.feedAll(over.handshake());
  const overId = h.feed(over.seg(junk, 100));
  t.equal(h.counter('limit_held'), 1, 'limit_held counted once');
  t.equal(h.fate(overId), 'block', 'the flow past the total gets on_limit (block)');
  t.match(h.decisions(), [{ verdict: 'block', reason: 'limit' }]);
  h.feed(good.seg(m.bytes.subarray(p), p), 'real');
  good.advance(m.bytes.length);
  t.match(h.decisions().at(-1), { host: BLOCKED, verdict: 'block', reason: 'rule:test' }, 'the flow within bounds is decided by the policy');
  t.ok(h.engine.heldBytes >= 15_000, 'the stalled flows still hold their bytes');
  // The stalled flows time out; a new flow is served again.
  h.sched.advance(31_000);
  h.engine.tick(h.sched.now);
  t.equal(h.engine.heldBytes, 0, 'nothing held after the stalled flows timed out');
  const next = conn('http');
  h.feedAll(next.handshake());
  send(h, next, message('http', ALLOWED).bytes, 'ctl');
  t.match(h.decisions().at(-1), { host: ALLOWED, verdict: 'allow' }, 'a new flow is served');
  t.same(settledProblems(h), [], 'every packet settled once');
});

t.test('max_held_packets_per_flow: tiny segments past the cap give on_limit to that flow only', async (t) => {
  const h = new Harness({ limits: limits({ maxHeldPacketsPerFlow: 8 }) });
  const m = message('http', ALLOWED);
  const c = conn('http');
  h.feedAll(c.handshake());
  for (let i = 0; i < 20; i++) h.feed(c.seg(m.bytes.subarray(i, i + 1), i));
  t.equal(h.counter('limit_held'), 1, 'counted');
  t.match(h.decisions(), [{ verdict: 'block', reason: 'limit' }], 'on_limit (block)');
  const other = conn('http');
  h.feedAll(other.handshake());
  send(h, other, m.bytes, 'ctl');
  t.match(h.decisions().at(-1), { host: ALLOWED, verdict: 'allow' }, 'another flow is served');
  t.same(settledProblems(h), [], 'every packet settled once');
});

/** A policy that never answers for names starting with "slow", and decides the others by name. */
const neverForSlow: DecideFn = (info, flow) =>
  (info.sni ?? info.host ?? '').startsWith('slow') ? new Promise(() => {}) : byName(info, flow);

t.test('paused flows the policy never answers: max_inspecting_flows, then decision_timeout_ms', async (t) => {
  for (const kind of ['tls', 'http'] as Kind[]) for (const onLimit of ['block', 'allow'] as const) {
    const label = `${kind} on_limit=${onLimit}`;
    const h = new Harness({ onLimit, decisionTimeoutMs: 2000, limits: limits({ maxInspectingFlows: 8 }) }, neverForSlow);
    for (let i = 0; i < 7; i++) {
      const c = conn(kind, { sport: 32000 + i });
      h.feedAll(c.handshake());
      send(h, c, message(kind, `slow${i}.test`).bytes, 'ctl');
    }
    t.equal(h.engine.stats.pausedFlows, 7, `${label}: seven flows wait for the policy`);
    // An eighth flow is being inspected (half its message held) when a ninth arrives.
    const m = message(kind, BLOCKED);
    const busy = conn(kind);
    h.feedAll(busy.handshake());
    const p = m.nameAt + 2;
    h.feed(busy.seg(m.bytes.subarray(0, p)), 'real');
    const late = conn(kind);
    h.feedAll(late.handshake());
    const lateId = send(h, late, message(kind, ALLOWED).bytes, 'ctl');
    t.equal(h.counter('limit_inspecting_flows'), 1, `${label}: counted`);
    t.match(h.decisions().at(-1), { verdict: onLimit, reason: 'limit' }, `${label}: the flow past the limit gets on_limit`);
    t.equal(passed(h.fate(lateId)), onLimit === 'allow', `${label}: its packet got that verdict`);
    h.feed(busy.seg(m.bytes.subarray(p), p), 'real');
    busy.advance(m.bytes.length);
    t.match(h.decisions().at(-1), { verdict: 'block', reason: 'rule:test' }, `${label}: the flow within the limit is served`);
    // The policy never answers: decision_timeout_ms gives on_timeout (allow) to the seven.
    h.sched.advance(2000);
    t.equal(h.counter('decision_timeout'), 7, `${label}: seven decision timeouts`);
    t.equal(h.engine.stats.pausedFlows, 0, `${label}: nothing paused any more`);
    t.equal(h.engine.heldPackets, 0, `${label}: nothing held`);
    // The seven now hold nothing and wait for no decision ("flows with held packets or a pending
    // decision" is what the limit counts): two new flows in progress at once must both be inspected.
    const next = [conn(kind), conn(kind)];
    for (const n of next) {
      h.feedAll(n.handshake());
      h.feed(n.seg(m.bytes.subarray(0, p)), 'real');
    }
    for (const n of next) {
      h.feed(n.seg(m.bytes.subarray(p), p), 'real');
      n.advance(m.bytes.length);
    }
    t.match(h.decisions().slice(-2), [{ verdict: 'block', reason: 'rule:test' }, { verdict: 'block', reason: 'rule:test' }],
      `${label}: new flows are decided by the policy again`);
    t.equal(h.counter('limit_inspecting_flows'), 1, `${label}: no more limit hits`);
    t.same(settledProblems(h), [], `${label}: every packet settled once`);
  }
});

t.test('G2: a message that never completes is not let through by the idle timeout', async (t) => {
  // Default options: on_timeout is allow (a slow policy fails open), but a client that stops in
  // the middle of a message must not get its held bytes through: past the hold timeout the
  // configured limit verdict (block by default) applies, and the rest of the flow gets it too.
  for (const kind of ['tls', 'http'] as Kind[]) {
    const m = message(kind, BLOCKED);
    {
      const h = new Harness();
      const c = conn(kind);
      h.feedAll(c.handshake());
      // Everything but the first byte: held behind the hole.
      h.feed(c.seg(m.bytes.subarray(1), 1), 'real');
      h.sched.advance(31_000);
      h.engine.tick(h.sched.now);
      t.equal(h.counter('timeout_flows'), 1, `${kind}: the stalled flow timed out`);
      // Then the first byte: the server would now hold the whole message.
      h.feed(c.seg(m.bytes.subarray(0, 1)), 'real');
      h.sched.advance(31_000);
      h.engine.tick(h.sched.now);
      const leaked = h.ids('real').filter((id) => passed(h.fate(id)));
      t.same(leaked, [], `${kind}: no byte of the blocked message passed, hole or not (fates ${h.ids('real').map((id) => h.fate(id))})`);
      t.same(settledProblems(h), [], `${kind}: every packet settled once`);
    }
    {
      const h = new Harness();
      const c = conn(kind);
      h.feedAll(c.handshake());
      // The first part only, in order; the client goes quiet.
      h.feed(c.seg(m.bytes.subarray(0, m.nameAt + 6)), 'real');
      h.sched.advance(31_000);
      h.engine.tick(h.sched.now);
      h.feed(c.seg(m.bytes.subarray(m.nameAt + 6), m.nameAt + 6), 'real');
      h.sched.advance(31_000);
      h.engine.tick(h.sched.now);
      const leaked = h.ids('real').filter((id) => passed(h.fate(id)));
      t.same(leaked, [], `${kind}: a message completed after the timeout does not pass (fates ${h.ids('real').map((id) => h.fate(id))})`);
      t.same(settledProblems(h), [], `${kind}: every packet settled once`);
    }
  }
});

t.test('tuning knobs are the documented option names', async (t) => {
  // The options the flood tests rely on exist with these names and defaults (a rename would
  // silently make the tests above meaningless).
  const h = new Harness();
  const o: EngineOptions = h.engine.options;
  t.match(o.limits, { maxFlows: 262144, maxInspectingFlows: 65536, maxHeldPacketsPerFlow: 64, maxOutOfOrderBytesPerFlow: 262144, maxHeldBytesTotal: 268435456 });
  t.equal(o.onLimit, 'block');
});
