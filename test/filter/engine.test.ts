import t from 'tap';
import { Engine } from '../../src/filter/engine.js';
import type { DecideFn, DecisionEvent, FlowgateEvent } from '../../src/filter/types.js';
import { NF_ACCEPT, NF_DROP, NF_REPEAT } from '../../src/verdict/sink.js';
import { decodeIp } from '../../src/packet/decode.js';
import { RST } from '../../src/packet/types.js';
import type { NextSegmentChecks } from '../../src/flow/tcp.js';
import { Conversation, Feeder, ManualScheduler, RecordingSink, clientHello } from '../helpers/tcp.js';

function setup(decide: DecideFn, options = {}) {
  const sink = new RecordingSink();
  const events: FlowgateEvent[] = [];
  const sched = new ManualScheduler();
  const engine = new Engine({ decide, sink, scheduler: sched, now: () => sched.now, onEvent: (e) => events.push(e),
    options: { verifyChecksums: true, ...options } });
  const feeder = new Feeder((p) => engine.handle(p));
  const decisions = () => events.filter((e): e is DecisionEvent => e.type === 'decision');
  const invariant = () => engine.stats.received === engine.stats.verdicts + engine.stats.held && sink.duplicates === 0;
  return { sink, events, sched, engine, feeder, decisions, invariant };
}

const byName = (blocked: string): DecideFn => (info) =>
  (info.sni ?? info.host) === blocked ? { verdict: 'block', reason: 'rule:test' } : { verdict: 'allow', reason: 'default' };

/** The client's second flight in TLS 1.3: ChangeCipherSpec, then an encrypted record. */
const SECOND_FLIGHT = Uint8Array.of(0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 3, 9, 9, 9);

t.test('handshake passes at once; an allowed ClientHello is released, the flow bypasses after the next record', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  const hs = s.feeder.feed(...c.handshake());
  for (const id of hs) t.equal(s.sink.verdicts.get(id)?.verdict, NF_ACCEPT);
  const [ch] = s.feeder.feed(c.send(clientHello({ sni: 'Allowed.TEST.', alpn: ['h2', 'http/1.1'] })));
  t.same(s.sink.verdicts.get(ch!), { verdict: NF_REPEAT, mark: 0x300, order: 3 },
    'released with the inspect mark: replies bypass, a second hello (after HelloRetryRequest) would be seen');
  const d = s.decisions();
  t.equal(d.length, 1);
  t.match(d[0], { app: 'tls', sni: 'allowed.test', alpn: ['h2', 'http/1.1'], verdict: 'allow', reason: 'default',
    held_packets: 1, dport: 443 });
  c.serverFlight();
  const [fin] = s.feeder.feed(c.send(SECOND_FLIGHT));
  t.same(s.sink.verdicts.get(fin!)?.mark, 0x100, 'not a hello: the flow is marked to bypass the queue');
  t.equal(s.decisions().length, 1, 'the end of inspection is not a decision of its own');
  t.equal(s.engine.table.size, 0, 'a bypassed flow leaves the table');
  // A straggler of the decided flow gets the same mark.
  const [late] = s.feeder.feed(c.send('x'));
  t.equal(s.sink.verdicts.get(late!)?.mark, 0x100);
  t.ok(s.invariant());
});

t.test('a packet queued again after our repeat (rules without the mark guard) is accepted or dropped, never repeated again', async (t) => {
  // With a plain `-j NFQUEUE` rule the packet we repeat with a mark comes straight back to the
  // queue; repeating it again would loop forever. What it already carries is its verdict.
  const s = setup(byName('blocked.test'));
  let id = 1000;
  const again = (data: Uint8Array, mark: number) => {
    const pid = id++;
    s.engine.handle({ id: pid, mark, data, skbInfo: 0 });
    return s.sink.verdicts.get(pid);
  };
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const hello = c.send(clientHello({ sni: 'allowed.test' }));
  const [ch] = s.feeder.feed(hello);
  t.same(s.sink.verdicts.get(ch!), { verdict: NF_REPEAT, mark: 0x300, order: 3 });
  t.same(again(hello, 0x300), { verdict: NF_ACCEPT, mark: undefined, order: 4 }, 'the hello, back with the inspect mark: accepted');
  c.serverFlight();
  const flight = c.send(SECOND_FLIGHT);
  const [f] = s.feeder.feed(flight);
  t.equal(s.sink.verdicts.get(f!)?.mark, 0x100);
  t.equal(again(flight, 0x100)?.verdict, NF_ACCEPT, 'back with the allow mark: accepted');
  t.equal(again(c.send('x'), 0x1100)?.verdict, NF_ACCEPT, 'bits outside flowgate\'s mask do not matter');
  // (The hello was already passed as a retransmission of allowed bytes; the two others would have been repeated.)
  t.equal(s.engine.stats.events.get('requeued_marked'), 2, 'counted');

  const b = new Conversation();
  s.feeder.feed(...b.handshake());
  const blocked = b.send(clientHello({ sni: 'blocked.test' }));
  const [bh] = s.feeder.feed(blocked);
  t.equal(s.sink.verdicts.get(bh!)?.mark, 0x200, 'blocked: repeated with the block mark for the REJECT rule');
  t.equal(again(blocked, 0x200)?.verdict, NF_DROP, 'back with the block mark: dropped, never let through');
  t.ok(s.invariant());
});

t.test('a blocked ClientHello split in three reordered segments: all held, then reset both ways', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const firstSeq = c.cseq;
  const segs = c.split(clientHello({ sni: 'blocked.test' }), [5, 40]);
  const ids = s.feeder.feed(segs[2]!, segs[0]!, segs[1]!);
  t.equal(s.decisions().length, 1);
  t.match(s.decisions()[0], { verdict: 'block', reason: 'rule:test', held_packets: 3, sni: 'blocked.test' });
  t.equal(s.sink.verdicts.get(ids[0]!)?.verdict, NF_DROP);
  t.equal(s.sink.verdicts.get(ids[1]!)?.verdict, NF_DROP);
  t.same(s.sink.verdicts.get(ids[2]!)?.mark, 0x200, 'the last held packet carries the block mark (REJECT resets the client)');
  t.equal(s.sink.raw.length, 1, 'one RST toward the server');
  const rst = decodeIp(s.sink.raw[0]!);
  t.ok(rst.kind === 'tcp' && rst.packet.flags & RST && rst.packet.seq === firstSeq && rst.packet.dst === c.server);
  t.ok(s.invariant());
});

t.test('block_action drop: held packets dropped, no RST, later packets dropped', async (t) => {
  const s = setup(byName('blocked.test'), { blockAction: 'drop' });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [id] = s.feeder.feed(c.send(clientHello({ sni: 'blocked.test' })));
  t.equal(s.sink.verdicts.get(id!)?.verdict, NF_DROP);
  t.equal(s.sink.raw.length, 0);
  const [again] = s.feeder.feed(c.send(clientHello({ sni: 'blocked.test' }), { at: -1000 }));
  t.equal(s.sink.verdicts.get(again!)?.verdict, NF_DROP);
});

t.test('an asynchronous decision holds packets; retransmissions of held bytes are dropped; order kept', async (t) => {
  let resolve!: (v: 'allow') => void;
  const s = setup(() => new Promise((r) => (resolve = r)));
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const hello = clientHello({ sni: 'slow.test' });
  const segs = c.split(hello, [100]);
  const ids = s.feeder.feed(...segs);
  t.equal(s.engine.heldPackets, 2);
  t.equal(s.engine.stats.pausedFlows, 1);
  const [dup] = s.feeder.feed(segs[0]!); // the client retransmits while we wait
  t.equal(s.sink.verdicts.get(dup!)?.verdict, NF_DROP);
  const [ack] = s.feeder.feed(c.serverAck());
  t.equal(s.sink.verdicts.get(ack!)?.verdict, NF_ACCEPT, 'server packets are never held');
  s.sched.advance(300);
  resolve('allow');
  await new Promise((r) => setImmediate(r));
  t.equal(s.engine.heldPackets, 0);
  const order = ids.map((id) => s.sink.verdicts.get(id)!.order);
  t.ok(order[0]! < order[1]!, 'released in arrival order');
  t.match(s.decisions()[0], { verdict: 'allow', reason: 'policy', held_packets: 2, held_ms: 300 });
  t.ok(s.invariant());
});

t.test('a decision that never settles gets on_timeout; a late answer is ignored', async (t) => {
  let resolve!: (v: 'allow') => void;
  const s = setup(() => new Promise((r) => (resolve = r)), { decisionTimeoutMs: 500, onTimeout: 'block' });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [id] = s.feeder.feed(c.send(clientHello({ sni: 'x.test' })));
  s.sched.advance(499);
  t.equal(s.sink.verdicts.has(id!), false);
  s.sched.advance(1);
  t.equal(s.sink.verdicts.get(id!)?.mark, 0x200);
  t.match(s.decisions()[0], { verdict: 'block', reason: 'timeout' });
  resolve('allow');
  await new Promise((r) => setImmediate(r));
  t.equal(s.decisions().length, 1, 'the late answer changes nothing');
  t.equal(s.engine.stats.pausedFlows, 0);
});

t.test('policy errors give on_error', async (t) => {
  const s = setup(() => Promise.reject(new Error('down')), { onError: 'block' });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send(clientHello({ sni: 'x.test' })));
  await new Promise((r) => setImmediate(r));
  t.match(s.decisions()[0], { verdict: 'block', reason: 'error' });
  const s2 = setup(() => {
    throw new Error('sync');
  });
  const c2 = new Conversation();
  s2.feeder.feed(...c2.handshake());
  s2.feeder.feed(c2.send(clientHello({ sni: 'x.test' })));
  t.match(s2.decisions()[0], { verdict: 'allow', reason: 'error' });
});

t.test('keep-alive HTTP: every request is decided; bodies pass; a blocked request resets', async (t) => {
  const s = setup((info) => (info.path === '/blocked' ? { verdict: 'block', reason: 'rule:path' } : 'allow'));
  const c = new Conversation({ dport: 80 });
  s.feeder.feed(...c.handshake());
  const [r1] = s.feeder.feed(c.send('POST /a HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 10\r\n\r\n'));
  t.equal(s.sink.verdicts.get(r1!)?.mark, 0x300, 'released with the inspect mark: replies bypass');
  const [body] = s.feeder.feed(c.send('0123456789'));
  t.equal(s.sink.verdicts.get(body!)?.verdict, NF_ACCEPT, 'the body passes without being held');
  const [r2a, r2b] = s.feeder.feed(...c.split('GET /b HTTP/1.1\r\nHost: allowed.test\r\n\r\n', [10]));
  t.equal(s.sink.verdicts.get(r2a!)?.order! < s.sink.verdicts.get(r2b!)?.order!, true);
  const [r3] = s.feeder.feed(c.send('GET /blocked HTTP/1.1\r\nHost: allowed.test\r\n\r\n'));
  t.equal(s.sink.verdicts.get(r3!)?.mark, 0x200);
  t.same(s.decisions().map((d) => [d.method, d.path, d.verdict]),
    [['POST', '/a', 'allow'], ['GET', '/b', 'allow'], ['GET', '/blocked', 'block']]);
  t.ok(s.invariant());
});

t.test('pipelined requests in one segment: the packet is released only when both are allowed', async (t) => {
  const answers: Array<(v: 'allow' | 'block') => void> = [];
  const s = setup(() => new Promise((r) => answers.push(r)));
  const c = new Conversation({ dport: 80 });
  s.feeder.feed(...c.handshake());
  const [p] = s.feeder.feed(c.send('GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: b.test\r\n\r\n'));
  t.equal(answers.length, 1, 'one decision at a time');
  answers[0]!('allow');
  await new Promise((r) => setImmediate(r));
  t.equal(s.sink.verdicts.has(p!), false, 'still held: the second request is undecided');
  t.equal(answers.length, 2);
  answers[1]!('block');
  await new Promise((r) => setImmediate(r));
  t.equal(s.sink.verdicts.get(p!)?.mark, 0x200);
  t.same(s.decisions().map((d) => d.host), ['a.test', 'b.test']);
});

t.test('a conflicting copy of held bytes blocks the flow (EVASION G3)', async (t) => {
  const s = setup(() => 'allow');
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const real = clientHello({ sni: 'blocked.test' });
  const fake = clientHello({ sni: 'allowed.test' });
  s.sched.advance(60_000); // the clock is far from 0 when the conflict comes
  s.feeder.feed(c.send(fake.subarray(0, 120), { advance: false }));
  s.feeder.feed(c.send(real.subarray(0, 120), { advance: false }));
  t.match(s.decisions()[0], { verdict: 'block', reason: 'ambiguous:conflict' });
  t.equal(s.engine.stats.events.get('evasion_conflict'), 1);
  t.equal(s.engine.stats.latencySumMs, 0, 'a forced decision takes no time (not time since the clock started)');
  t.ok(s.invariant());
});

t.test('a fake with a bad checksum is dropped uninspected; the real hello decides', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [fake] = s.feeder.feed(c.send(clientHello({ sni: 'allowed.test' }), { advance: false, extra: { badChecksum: true } }));
  t.equal(s.sink.verdicts.get(fake!)?.verdict, NF_DROP);
  s.feeder.feed(c.send(clientHello({ sni: 'blocked.test' })));
  t.match(s.decisions(), [{ sni: 'blocked.test', verdict: 'block' }]);
});

t.test('shutdown settles every held packet', async (t) => {
  const s = setup(() => new Promise(() => {}));
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [id] = s.feeder.feed(c.send(clientHello({ sni: 'x.test' })));
  s.engine.shutdown('allow');
  t.equal(s.sink.verdicts.get(id!)?.mark, 0x100);
  t.equal(s.engine.heldPackets, 0);
  t.equal(s.engine.table.size, 0);
  t.ok(s.invariant());
});

t.test('a second ClientHello after HelloRetryRequest is decided too', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send(clientHello({ sni: 'allowed.test' })));
  c.serverFlight(100); // the HelloRetryRequest
  const [again] = s.feeder.feed(c.send(Uint8Array.of(0x14, 3, 3, 0, 1, 1)), c.send(clientHello({ sni: 'blocked.test' })));
  t.same(s.decisions().map((d) => [d.sni, d.verdict]), [['allowed.test', 'allow'], ['blocked.test', 'block']]);
  t.ok(again !== undefined);
  t.ok(s.invariant());
});

t.test('PostgreSQL SSLRequest passes, then the ClientHello behind it is decided', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation({ dport: 5432 });
  s.feeder.feed(...c.handshake());
  const [req] = s.feeder.feed(c.send(Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f)));
  t.same(s.sink.verdicts.get(req!), { verdict: NF_ACCEPT, mark: undefined, order: 3 },
    'the SSLRequest is released unmarked: the server\'s answer to it still comes to flowgate');
  s.feeder.feed(c.send(clientHello({ sni: 'blocked.test' })));
  t.match(s.decisions(), [{ app: 'tls', sni: 'blocked.test', verdict: 'block' }]);
});

t.test('unknown protocols are decided as app unknown from their first bytes', async (t) => {
  const s = setup(() => 'allow');
  const c = new Conversation({ dport: 22 });
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send('SSH-2.0-OpenSSH_9.2p1 Debian\r\n'));
  t.match(s.decisions(), [{ app: 'unknown', verdict: 'allow' }]);
});

t.test('midstream flows are inspected from their first data by default', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  s.feeder.feed(c.send(clientHello({ sni: 'blocked.test' })));
  t.match(s.decisions(), [{ verdict: 'block', sni: 'blocked.test' }]);
  const s2 = setup(byName('blocked.test'), { midstream: 'allow' });
  const c2 = new Conversation();
  const [id] = s2.feeder.feed(c2.send(clientHello({ sni: 'blocked.test' })));
  t.match(s2.decisions(), [{ verdict: 'allow', reason: 'midstream' }]);
  t.equal(s2.sink.verdicts.get(id!)?.mark, 0x100);
});

t.test('idle flows time out and settle what they hold', async (t) => {
  const s = setup(() => 'allow', { timeouts: { synS: 1, establishedS: 5, closingS: 1, inspectingS: 2 }, onTimeout: 'block' });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [part] = s.feeder.feed(c.send(clientHello({ sni: 'a.test' }).subarray(0, 20)));
  s.sched.advance(2500);
  s.engine.tick(s.sched.now);
  t.equal(s.sink.verdicts.get(part!)?.verdict, NF_DROP);
  t.equal(s.engine.table.size, 0);
  t.match(s.events.find((e) => e.type === 'flow_end'), { why: 'timeout' });
});

t.test("events: 'decisions' still reports decisions, builds no flow_end events, and flows still end", async (t) => {
  const sink = new RecordingSink();
  const events: FlowgateEvent[] = [];
  const sched = new ManualScheduler();
  const engine = new Engine({ decide: () => 'allow', sink, scheduler: sched, now: () => sched.now, events: 'decisions',
    onEvent: (e) => events.push(e), options: { timeouts: { synS: 1, establishedS: 5, closingS: 1, inspectingS: 2 } } });
  const feeder = new Feeder((p) => engine.handle(p));
  const decided = new Conversation({ sport: 41001 });
  feeder.feed(...decided.handshake());
  feeder.feed(decided.send(clientHello({ sni: 'b.test' })));
  t.match(events, [{ type: 'decision', sni: 'b.test', verdict: 'allow' }], 'the decision is reported');
  const c = new Conversation({ sport: 41002 });
  feeder.feed(...c.handshake());
  const [part] = feeder.feed(c.send(clientHello({ sni: 'a.test' }).subarray(0, 20)));
  sched.advance(2500);
  engine.tick(sched.now);
  t.equal(sink.verdicts.get(part!)?.verdict, NF_DROP, 'the incomplete hello settled with on_limit (block)');
  t.equal(engine.table.size, 0, 'both flows ended');
  t.same(events.filter((e) => e.type === 'flow_end'), [], 'no flow_end event');
  t.equal(events.length, 1, 'only the decision');
});

t.test('TCP Fast Open: data in the SYN is inspected; a blocked hello in a SYN is reset', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  const [syn] = s.feeder.feed(c.synWithData(clientHello({ sni: 'blocked.test' })));
  t.equal(s.sink.verdicts.get(syn!)?.mark, 0x200, 'the SYN itself carries the block mark');
  t.equal(s.sink.raw.length, 0, 'no RST to a server that never saw the SYN');
  t.match(s.decisions(), [{ sni: 'blocked.test', verdict: 'block' }]);
});

t.test('TCP Fast Open: allowed data accepted by the server; the flow is marked after the SYN-ACK', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  const hello = clientHello({ sni: 'allowed.test' });
  const [syn] = s.feeder.feed(c.synWithData(hello));
  t.equal(s.sink.verdicts.get(syn!)?.verdict, NF_ACCEPT, 'released unmarked: the SYN-ACK must come here');
  const [sa] = s.feeder.feed(c.synAck(hello.length));
  t.equal(s.sink.verdicts.get(sa!)?.verdict, NF_ACCEPT);
  c.cseq = (c.cseq + hello.length) >>> 0;
  const [ack] = s.feeder.feed(c.clientAck());
  t.equal(s.sink.verdicts.get(ack!)?.verdict, NF_ACCEPT);
  c.serverFlight();
  const [fin] = s.feeder.feed(c.send(SECOND_FLIGHT));
  t.equal(s.sink.verdicts.get(fin!)?.mark, 0x100, 'confirmed, no second hello: now the flow bypasses');
  t.equal(s.engine.table.size, 0);
  t.ok(s.invariant());
});

t.test('TCP Fast Open: data refused by the server is inspected again when resent (and may differ)', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation();
  const [syn] = s.feeder.feed(c.synWithData(clientHello({ sni: 'allowed.test' })));
  t.equal(s.sink.verdicts.get(syn!)?.verdict, NF_ACCEPT);
  s.feeder.feed(c.synAck(0));
  const [real] = s.feeder.feed(c.send(clientHello({ sni: 'blocked.test' })));
  t.equal(s.sink.verdicts.get(real!)?.mark, 0x200, 'the resent, different hello is what counts: blocked');
  t.same(s.decisions().map((d) => [d.sni, d.verdict]), [['allowed.test', 'allow'], ['blocked.test', 'block']]);
  t.equal(s.engine.stats.events.get('evasion_conflict'), undefined, 'a legitimate resend is not a conflict');
  t.ok(s.invariant());
});

t.test('a new SYN on the same ports starts a new flow (port reuse), also after a decided flow', async (t) => {
  const s = setup(byName('blocked.test'));
  const c = new Conversation({ dport: 80, sport: 40001 });
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n'));
  s.feeder.feed(c.clientFin());
  const again = new Conversation({ dport: 80, sport: 40001, cisn: 900000 });
  const [syn] = s.feeder.feed(...again.handshake());
  t.equal(s.sink.verdicts.get(syn!)?.verdict, NF_ACCEPT);
  const [req] = s.feeder.feed(again.send('GET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n'));
  t.equal(s.sink.verdicts.get(req!)?.mark, 0x200, 'the new connection is inspected from its own start');
  t.equal(s.engine.stats.events.get('port_reuse'), 1);
  const tls = new Conversation({ sport: 40002 });
  s.feeder.feed(...tls.handshake(), tls.send(clientHello({ sni: 'allowed.test' })));
  tls.serverFlight();
  s.feeder.feed(tls.send(SECOND_FLIGHT));
  const tls2 = new Conversation({ sport: 40002, cisn: 700000 });
  s.feeder.feed(...tls2.handshake());
  const [ch] = s.feeder.feed(tls2.send(clientHello({ sni: 'blocked.test' })));
  t.equal(s.sink.verdicts.get(ch!)?.mark, 0x200, 'a tombstone does not swallow a new connection');
  t.ok(s.invariant());
});

t.test('a large upload on a flow inspected request by request streams through (no window guess, bounded memory)', async (t) => {
  const s = setup(() => 'allow');
  const c = new Conversation({ dport: 80 });
  s.feeder.feed(...c.handshake());
  const size = 2 * 1024 * 1024;
  s.feeder.feed(c.send(`POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${size}\r\n\r\n`));
  const chunk = new Uint8Array(1448).fill(0x61);
  let passed = 0;
  let sent = 0;
  for (; sent + chunk.length <= size; sent += chunk.length) {
    const [id] = s.feeder.feed(c.send(chunk));
    if (s.sink.verdicts.get(id!)?.verdict === NF_ACCEPT) passed++;
  }
  const [last] = s.feeder.feed(c.send(new Uint8Array(size - sent).fill(0x61)));
  t.equal(s.sink.verdicts.get(last!)?.verdict, NF_ACCEPT);
  t.equal(passed, Math.floor(size / 1448), 'every body packet passed at once, none held');
  t.same(Object.fromEntries(s.engine.stats.events), {}, 'no limit, no evasion counter');
  s.feeder.feed(c.send('GET /next HTTP/1.1\r\nHost: b.test\r\n\r\n'));
  t.same(s.decisions().map((d) => d.path), ['/up', '/next'], 'the next request is decided');
});

t.test('G2: a message must complete within inspecting_s of its oldest held packet, however often the client resends', async (t) => {
  const s = setup(byName('blocked.test'), { onLimit: 'block', timeouts: { inspectingS: 2 } });
  const c = new Conversation({ dport: 80 });
  s.feeder.feed(...c.handshake());
  const pkts = c.split('GET / HTTP/1.1\r\nX-A: 1\r\nHost: allowed.test\r\n\r\n', [16, 24]);
  s.feeder.feed(pkts[0]!, pkts[1]!);
  for (let ms = 500; ms <= 2500; ms += 500) {
    s.sched.now = ms;
    s.feeder.feed(pkts[0]!); // the client resends what was not acknowledged: the flow never idles
    s.engine.tick(ms);
  }
  t.equal(s.engine.stats.events.get('limit_incomplete'), 1, 'limit_incomplete counted once');
  t.equal(s.engine.heldPackets, 0, 'nothing held any more');
  const [late] = s.feeder.feed(pkts[2]!);
  t.not(s.sink.verdicts.get(late!)?.verdict, NF_ACCEPT, 'the end of the message, sent late, does not pass');
  t.equal(s.decisions().length, 0, 'the message was never decided');
  t.ok(s.invariant());
});

/** A sink that takes the engine's expectAfterHello, as the kernel queue's binding does. */
class ArmingSink extends RecordingSink {
  readonly arms: Array<{ key: string; clientLow: boolean; seq: number; allowMark: number; mask: number; checks?: NextSegmentChecks }> = [];
  /** Each forgetAfterHello: the key, and whether it came on a packet of the flow (afterPacket). */
  readonly forgets: Array<[string, boolean]> = [];
  expectAfterHello(key: string, clientLow: boolean, seq: number, allowMark: number, mask: number, checks: NextSegmentChecks): void {
    this.arms.push({ key, clientLow, seq, allowMark, mask, checks });
  }
  forgetAfterHello(key: string, afterPacket = false): void {
    this.forgets.push([key, afterPacket]);
  }
}

function armingSetup(decide: DecideFn, options = {}) {
  const sink = new ArmingSink();
  const sched = new ManualScheduler();
  const engine = new Engine({ decide, sink, scheduler: sched, now: () => sched.now, options });
  const feeder = new Feeder((p) => engine.handle(p));
  return { sink, sched, engine, feeder };
}

t.test('after an allowed ClientHello the sink is armed for the next record, where the stream stands', async (t) => {
  const s = armingSetup(() => 'allow');
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [ch] = s.feeder.feed(c.send(clientHello({ sni: 'allowed.test' })));
  t.equal(s.sink.verdicts.get(ch!)?.mark, 0x300, 'the hello is released with the inspect mark');
  const flow = [...s.engine.table.all()][0]!;
  t.match(s.sink.arms, [{ key: flow.key, clientLow: flow.isClientSide(true), seq: c.cseq, allowMark: 0x100, mask: 0x300 }],
    'armed once: the flow, its client side, the seq after the hello, the allow mark');
  t.equal(s.sink.arms.length, 1);
  c.serverFlight();
  const [next] = s.feeder.feed(c.send(SECOND_FLIGHT));
  t.equal(s.sink.verdicts.get(next!)?.mark, 0x100, 'a packet that did not pass the binding: the engine marks the flow itself');
  t.same(s.sink.forgets, [[flow.key, true]],
    'the next packet takes the arm back, as one the binding saw after the arm (only a pending arm is left to take back)');
  t.equal(s.sink.arms.length, 1);
});

t.test("the arm carries what discardReason checks of the next packet, so the binding can refuse fakes", async (t) => {
  const s = armingSetup(() => 'allow', { verifyChecksums: true, strictTcp: true });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send(clientHello({ sni: 'allowed.test' })));
  const flow = [...s.engine.table.all()][0]!;
  const arm = s.sink.arms[0] as unknown as { checks: { verifyChecksum: boolean; minTtl: number; tsMin?: number; ackMin?: number } };
  t.match(arm.checks, { verifyChecksum: true, minTtl: flow.c2s.ttl, tsMin: flow.c2s.tsVal }, 'checksum, the handshake TTL, the last timestamp');
  t.equal(arm.checks.ackMin, (flow.c2s.lastAck! - 0) >>> 0, 'ACKs older than the last one the client sent are refused (nothing acked yet)');
  t.equal((arm.checks as { ackAbove?: number }).ackAbove, (flow.s2c.isn! + 1) >>> 0,
    'only a packet acknowledging server data past the SYN-ACK (the server answered the hello) ends inspection');
  const loose = armingSetup(() => 'allow', { verifyChecksums: false, strictTcp: false });
  const d = new Conversation();
  loose.feeder.feed(...d.handshake());
  loose.feeder.feed(d.send(clientHello({ sni: 'allowed.test' })));
  t.same((loose.sink.arms[0] as unknown as { checks: unknown }).checks,
    { verifyChecksum: false, minTtl: 0, tsMin: undefined, ackMin: undefined, maxPayload: 16384, ackAbove: (d.sseq) >>> 0 },
    'an engine that checks nothing asks nothing but the length its limits leave room for, and the server\'s answer');
  const small = armingSetup(() => 'allow', { limits: { maxHeldBytesPerFlow: 1000 } });
  const e = new Conversation();
  small.feeder.feed(...e.handshake());
  small.feeder.feed(e.send(clientHello({ sni: 'allowed.test' })));
  t.equal(small.sink.arms[0]!.checks!.maxPayload, 1000, 'a longer packet would meet on_limit in the engine: the binding refuses it');
  const quiet = armingSetup(() => ({ verdict: 'allow', reason: 'quiet', quiet: true }));
  const q = new Conversation();
  quiet.feeder.feed(...q.handshake());
  quiet.feeder.feed(q.send(clientHello({ sni: 'allowed.test' })));
  t.equal(quiet.sink.arms.length, 0, 'not armed after a quiet allow: the engine still checks the server window, the binding cannot');
});

t.test('armed only once a pending decision settles; a ChangeCipherSpec alone re-arms it', async (t) => {
  let resolve!: (v: 'allow') => void;
  const s = armingSetup(() => new Promise((r) => (resolve = r)));
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send(clientHello({ sni: 'slow.test' })));
  t.equal(s.sink.arms.length, 0, 'not while the hello is held');
  resolve('allow');
  await new Promise((r) => setImmediate(r));
  t.equal(s.sink.arms.length, 1, 'armed when the decision settled');
  const [ccs] = s.feeder.feed(c.send(Uint8Array.of(0x14, 3, 3, 0, 1, 1)));
  t.equal(s.sink.verdicts.get(ccs!)?.verdict, NF_ACCEPT, 'a ChangeCipherSpec passes');
  t.same(s.sink.arms.map((a) => a.seq), [(c.cseq - 6) >>> 0, c.cseq], 'armed again at the record after it');
});

t.test('not armed with data buffered out of order, nor for HTTP; a flow ending armed is taken back', async (t) => {
  const s = armingSetup(() => 'allow', { timeouts: { synS: 1, establishedS: 5, closingS: 1, inspectingS: 2 } });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const hello = clientHello({ sni: 'a.test' });
  s.feeder.feed(c.send(SECOND_FLIGHT, { at: hello.length, advance: false }));
  s.feeder.feed(c.send(hello));
  t.equal(s.sink.arms.length, 0, 'bytes past the hello were already there: the engine reads them itself');

  const h = new Conversation({ sport: 41002, dport: 80 });
  s.feeder.feed(...h.handshake());
  s.feeder.feed(h.send('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'));
  t.equal(s.sink.arms.length, 0, 'HTTP is never armed');

  const idle = new Conversation({ sport: 41003 });
  s.feeder.feed(...idle.handshake());
  s.feeder.feed(idle.send(clientHello({ sni: 'b.test' })));
  t.equal(s.sink.arms.length, 1);
  s.sched.advance(3000);
  s.engine.tick(s.sched.now);
  t.same(s.sink.forgets, [[s.sink.arms[0]!.key, false]], 'the idle flow timed out while armed: taken back from the binding too');
});

t.test('fingerprints reach the policy and the event as values (computed when read)', async (t) => {
  const hello = clientHello({ sni: 'allowed.test', alpn: ['h2'] });
  const body = hello.subarray(9);
  const { parseClientHelloBody } = await import('../../src/protocols/tls/hello.js');
  const parsed = parseClientHelloBody(body, { recordVersion: 0x0301, recordCount: 1 });
  if (!parsed.ok) throw new Error(parsed.reason);
  const want = { ja3: parsed.hello.ja3Hash, ja4: parsed.hello.ja4 };
  t.match(want, { ja3: /^[0-9a-f]{32}$/, ja4: /^t\d\d/ });
  t.match(JSON.parse(JSON.stringify(parsed.hello)), { sni: 'allowed.test', ja3Hash: want.ja3, ja4: want.ja4, ja3: /^\d+,/ },
    'a hello serialises with its fingerprints');
  let seen: Record<string, unknown> | undefined;
  const s = setup((info) => {
    seen = { ...info };
    return 'allow';
  });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send(hello));
  t.match(seen, { sni: 'allowed.test', ...want }, 'the policy sees them (here through a spread)');
  const event = JSON.parse(JSON.stringify(s.decisions()[0]));
  t.match(event, { sni: 'allowed.test', ...want }, 'and the decision event, as JSON');
});

t.test('deferEvents: events are built after the call that caused them, in order; flushEvents hands them over at once', async (t) => {
  const sink = new RecordingSink();
  const events: FlowgateEvent[] = [];
  const sched = new ManualScheduler();
  const engine = new Engine({ decide: byName('blocked.test'), sink, scheduler: sched, now: () => sched.now, deferEvents: true,
    onEvent: (e) => events.push(e), options: { timeouts: { synS: 1, establishedS: 5, closingS: 1, inspectingS: 2 } } });
  const feeder = new Feeder((p) => engine.handle(p));
  const a = new Conversation({ sport: 41010, dport: 80 });
  feeder.feed(...a.handshake());
  const [req] = feeder.feed(a.send('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n'));
  t.ok(sink.verdicts.has(req!), 'the packet has its verdict when handle() returns');
  t.equal(events.length, 0, 'its events do not exist yet');
  await Promise.resolve();
  t.same(events.map((e) => (e as DecisionEvent).host), ['allowed.test', 'blocked.test'], 'both, in order, on the next microtask');
  t.match(events[0], { ts: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ }, 'with the system time as ISO text');

  const b = new Conversation({ sport: 41011 });
  feeder.feed(...b.handshake());
  feeder.feed(b.send(clientHello({ sni: 'x.test' }).subarray(0, 20)));
  sched.advance(3000);
  engine.tick(sched.now);
  engine.flushEvents();
  t.match(events.at(-1), { type: 'flow_end', why: 'timeout' }, 'flushEvents delivers without waiting');
});

t.test('deferEvents: a consumer that throws is counted, and the events after it still go out', async (t) => {
  const events: string[] = [];
  const engine = new Engine({ decide: () => 'allow', sink: new RecordingSink(), deferEvents: true, onEvent: (e) => {
    const host = (e as DecisionEvent).host ?? '';
    if (host === 'bad.test') throw new Error('consumer failed');
    events.push(host);
  } });
  const feeder = new Feeder((p) => engine.handle(p));
  const c = new Conversation({ dport: 80 });
  feeder.feed(...c.handshake());
  feeder.feed(c.send('GET / HTTP/1.1\r\nHost: bad.test\r\n\r\nGET / HTTP/1.1\r\nHost: good.test\r\n\r\n'));
  engine.flushEvents();
  t.same(events, ['good.test']);
  t.equal(engine.stats.events.get('internal_error'), 1);
});
