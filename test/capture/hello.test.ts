/**
 * The binding's reader thread lets a connection's first ClientHello on by itself when it is plain
 * and names a name the policy allows (NfQueue.expectHello): its reading of the hello must never
 * name what the engine's analyzer would not, or name where the analyzer finds a problem. These
 * tests hold the binding's reader (simpleHelloName, exported by the addon) against the analyzer
 * (src/protocols/), over real hellos, crafted ones and random corruptions of both.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { bindingReaders, packChecks } from '../../src/capture/queue.js';
import { Engine, type EngineHooks } from '../../src/filter/engine.js';
import type { DecideFn } from '../../src/filter/types.js';
import type { EngineLimits } from '../../src/filter/options.js';
import { srcIsLow } from '../../src/flow/key.js';
import { discardReason, type NextSegmentChecks } from '../../src/flow/tcp.js';
import { decodeIp } from '../../src/packet/decode.js';
import { buildTcpPacket } from '../../src/packet/build.js';
import { SYN, type TcpPacket } from '../../src/packet/types.js';
import { createAnalyzer } from '../../src/protocols/dispatch.js';
import { NF_REPEAT, type HelloArm } from '../../src/verdict/sink.js';
import { Conversation, RecordingSink, clientHello } from '../helpers/tcp.js';

const { simpleHelloName, readTcp, passesFakeChecks, echoCannotPassForServerHello } = bindingReaders();

function decodeTcp(pkt: Uint8Array): TcpPacket {
  const d = decodeIp(pkt);
  if (d.kind !== 'tcp') throw new Error('not tcp');
  return d.packet;
}
const MAX = 65536;

/**
 * The name the engine's analyzer decides a first packet holding `bytes` on, when it reads them as
 * exactly one whole, valid ClientHello with an unambiguous name and no ECH, and stops right at
 * their end; null otherwise.
 */
function analyzerName(bytes: Uint8Array, maxHelloBytes = MAX): string | null {
  const a = createAnalyzer({ maxHelloBytes });
  const events = a.feed(bytes, 0);
  if (events.length !== 1) return null;
  const e = events[0]!;
  if (e.kind !== 'unit' || e.opaque || e.info.app !== 'tls' || e.info.ech === true) return null;
  if (a.recordBoundary?.() !== bytes.length) return null;
  return typeof e.info.sni === 'string' ? e.info.sni : null;
}

const here = dirname(fileURLToPath(import.meta.url));
const fixtureDir = join(here, '../../../test/fixtures/tls');
const fixtures = readdirSync(fixtureDir).filter((f) => f.endsWith('.hex')).map((f) => ({
  name: f,
  bytes: Uint8Array.from(Buffer.from(readFileSync(join(fixtureDir, f), 'utf8').replace(/\s+/g, ''), 'hex')),
}));

/** The first record of a fixture (several hold more than the hello: the rest is not plain). */
function firstRecord(b: Uint8Array): Uint8Array {
  return b.subarray(0, Math.min(b.length, 5 + ((b[3]! << 8) | b[4]!)));
}

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
/** A hello with the given extensions (type, data) and nothing else. */
function helloWith(exts: Array<[number, number[]]>): Uint8Array {
  const block = exts.flatMap(([type, data]) => [...u16(type), ...u16(data.length), ...data]);
  const body = [3, 3, ...new Array(32).fill(1), 0, ...u16(2), 0x13, 0x01, 1, 0, ...u16(block.length), ...block];
  const hs = [1, 0, ...u16(body.length), ...body];
  return Uint8Array.from([0x16, 3, 1, ...u16(hs.length), ...hs]);
}
const sniExt = (name: string): [number, number[]] => {
  const n = [...Buffer.from(name, 'latin1')];
  return [0, [...u16(n.length + 3), 0, ...u16(n.length), ...n]];
};

t.test('real and usual hellos: the binding reads the name the engine decides on', async (t) => {
  const plain = [
    ['a small hello', clientHello({ sni: 'allowed.test' })],
    ['with ALPN and padding', clientHello({ sni: 'www.example.org', alpn: ['h2', 'http/1.1'], pad: 200 })],
    ['underscores and digits', clientHello({ sni: '_dmarc.x-1.example' })],
  ] as const;
  for (const [what, b] of plain) {
    const name = simpleHelloName(b, MAX);
    t.not(name, null, `binding reads ${what}`);
    t.equal(name, analyzerName(b), `engine agrees: ${what}`);
  }
  let named = 0;
  for (const f of fixtures) {
    const b = firstRecord(f.bytes);
    const name = simpleHelloName(b, MAX);
    if (name !== null) {
      named++;
      t.equal(name, analyzerName(b), `engine agrees on ${f.name} (${name})`);
    } else {
      t.pass(`${f.name}: not plain (engine reads ${String(analyzerName(b))})`);
    }
  }
  t.ok(named >= 3, `the binding reads most real hellos (${named} of ${fixtures.length})`);
});

t.test('hellos the binding leaves to the engine', async (t) => {
  const hello = clientHello({ sni: 'allowed.test' });
  const withTail = Uint8Array.from([...hello, 0x14, 3, 3, 0, 1, 1]);
  const cases: Array<[string, Uint8Array, number?]> = [
    ['ECH', firstRecord(fixtures.find((f) => f.name === 'tls13-ech.hex')!.bytes)],
    ['no server_name', clientHello({})],
    ['two server_name extensions', helloWith([sniExt('a.test'), sniExt('b.test')])],
    ['a repeated extension', helloWith([sniExt('a.test'), [16, [0, 3, 2, 0x68, 0x32]], [16, [0, 3, 2, 0x68, 0x32]]])],
    ['two host_name entries', helloWith([[0, [0, 12, 0, 0, 3, 0x61, 0x2e, 0x62, 0, 0, 3, 0x63, 0x2e, 0x64]]])],
    ['an uppercase name', clientHello({ sni: 'Allowed.test' })],
    ['a trailing dot', clientHello({ sni: 'allowed.test.' })],
    ['an IPv4 literal', clientHello({ sni: '10.0.0.1' })],
    ['a numeric last label', clientHello({ sni: 'host.123' })],
    ['a label starting with a hyphen', clientHello({ sni: '-a.test' })],
    ['an empty label', clientHello({ sni: 'a..test' })],
    ['a 64-byte label', clientHello({ sni: `${'a'.repeat(64)}.test` })],
    ['a space', clientHello({ sni: 'a b.test' })],
    ['a hello over two records', clientHello({ sni: 'allowed.test', recordSize: 40 })],
    ['a record after the hello', withTail],
    ['the hello cut short', hello.subarray(0, hello.length - 1)],
    ['malformed ALPN', helloWith([sniExt('a.test'), [16, [0, 9, 2, 0x68]]])],
    ['odd supported_groups', helloWith([sniExt('a.test'), [10, [0, 3, 0, 0x1d, 0]]])],
    ['malformed key_share', helloWith([sniExt('a.test'), [51, [0, 6, 0, 0x1d, 0, 9, 1, 1]]])],
    ['a body beyond maxHelloBytes', hello, 100],
    // 0-RTT: the records after it are the analyzer's to read (src/protocols/dispatch.ts).
    ['early_data offered', clientHello({ sni: 'allowed.test', earlyData: true })],
  ];
  for (const [what, b, max] of cases) {
    t.equal(simpleHelloName(b, max ?? MAX), null, `binding: ${what}`);
  }
  t.equal(simpleHelloName(helloWith([sniExt('a.test')]), MAX), 'a.test', 'the crafted hello is plain without the fault');
});

t.test('random corruptions: the binding never names what the engine would not', async (t) => {
  let seed = 0x9e3779b9;
  const rand = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const bases = [
    clientHello({ sni: 'allowed.test', alpn: ['h2'] }),
    clientHello({ sni: 'a.b.example', pad: 20 }),
    helloWith([sniExt('x.test'), [16, [0, 3, 2, 0x68, 0x32]], [43, [2, 3, 4]], [11, [1, 0]]]),
    ...fixtures.map((f) => firstRecord(f.bytes)).filter((b) => simpleHelloName(b, MAX) !== null),
  ];
  let named = 0;
  let disagreements = 0;
  for (let i = 0; i < 20000; i++) {
    const base = bases[rand(bases.length)]!;
    const b = Uint8Array.from(base);
    const edits = 1 + rand(3);
    for (let e = 0; e < edits; e++) {
      const at = rand(b.length);
      // Mostly small changes to one byte, which keep lengths near right; some random bytes.
      b[at] = rand(2) === 0 ? (b[at]! + (rand(2) === 0 ? 1 : 255)) & 0xff : rand(256);
    }
    const cut = rand(8) === 0 ? b.subarray(0, rand(b.length + 1)) : b;
    const max = rand(10) === 0 ? rand(600) : MAX;
    const name = simpleHelloName(cut, max);
    if (name === null) continue;
    named++;
    if (name !== analyzerName(cut, max)) disagreements++;
  }
  t.equal(disagreements, 0, 'no corrupted hello the binding reads a name from reads otherwise in the engine');
  t.ok(named > 1000, `corruptions that stay plain are checked too (${named})`);
});

/**
 * An engine that arms hellos, with a sink recording what it asks the binding; with `synArming` the
 * sink also arms flows on their SYN itself (armHellosOnSyn), as the kernel queue's binding does.
 */
function armingEngine(opts: { bindingHellos?: boolean; strictTcp?: boolean; synArming?: boolean; decide?: DecideFn;
  maxInspectingFlows?: number; hooks?: EngineHooks; kernelAnswers?: boolean } = {}) {
  const calls: Array<[string, ...unknown[]]> = [];
  const sink = Object.assign(new RecordingSink(), {
    expectHello: (key: string, clientLow: boolean, seq: number, checks: NextSegmentChecks, arm: HelloArm) =>
      void calls.push(['expect', key, clientLow, seq, checks, arm]),
    helloAnswered: (key: string, next: number) => void calls.push(['answered', key, next]),
    forgetHello: (key: string, afterPacket = false) => void calls.push(['forget', key, afterPacket]),
    ...(opts.synArming === true
      ? { armHellosOnSyn: (arm: HelloArm | undefined, checks: NextSegmentChecks) => void calls.push(['onSyn', arm, checks]) }
      : {}),
  });
  const engine = new Engine({ decide: opts.decide ?? (() => 'allow'), sink, bindingHellos: opts.bindingHellos ?? true, hooks: opts.hooks,
    kernelAnswers: opts.kernelAnswers,
    options: { verifyChecksums: true, strictTcp: opts.strictTcp ?? true,
      ...(opts.maxInspectingFlows === undefined ? {} : { limits: { maxInspectingFlows: opts.maxInspectingFlows } as EngineLimits }) } });
  let id = 1;
  /**
   * Hands the engine a packet; `logged`: as a copy from the log group, which has no packet id;
   * `synArmed`: flagged as a SYN the sink armed itself (SYN_ARMED_BY_BINDING).
   */
  const feed = (data: Uint8Array, logged = false, synArmed = false, answered = false, mark = 0) => {
    const n = logged ? 0 : id++;
    engine.handle({ id: n, mark, data, skbInfo: 0, synArmed, answered });
    return n;
  };
  return { engine, sink, calls, feed };
}

t.test('while the limits leave room, the binding arms flows on their SYN; the engine keeps the books of a SYN it armed', async (t) => {
  const pending: Array<() => void> = [];
  const decide: DecideFn = () => new Promise((resolve) => pending.push(() => resolve('allow')));
  const { engine, calls, feed } = armingEngine({ synArming: true, decide, maxInspectingFlows: 4 });
  const a = new Conversation();
  const [syn, synAck] = a.handshake();
  feed(syn!, true, true);
  const key = [...engine.table.all()][0]!.key;
  t.equal(calls.length, 1, 'one call on the first packet');
  const [what, arm, checks] = calls[0]!;
  t.equal(what, 'onSyn', 'the binding is asked to arm flows on their SYN');
  t.same(arm, { mark: 0x300, allowMark: 0x100, mask: 0x300, maxHelloBytes: 65536, strict: true, answerMark: 0 }, 'with the arm expectHello gets');
  t.match(checks, { verifyChecksum: true, minTtl: 0, tsMin: undefined, ackMin: undefined, maxPayload: 16384 });
  feed(synAck!, true);
  t.same(calls.slice(1), [['answered', key, 5001]], 'no expectHello for the SYN the binding armed; the flow counts as armed');
  feed(a.send(clientHello({ sni: 'one.test' })));
  t.same(calls[2], ['forget', key, true], 'its hello takes the arm back as usual');
  const b = new Conversation({ sport: 40001 });
  feed(b.handshake()[0]!);
  t.equal(calls[3]?.[0], 'expect', 'a queued SYN (with a packet id) is still armed by the engine');
  // Two decisions pending: half of max_inspecting_flows (4) busy.
  b.handshake().slice(1).forEach((p) => feed(p, true));
  feed(b.send(clientHello({ sni: 'two.test' })));
  const c = new Conversation({ sport: 40002 });
  const beforeC = calls.length;
  feed(c.handshake()[0]!, true, true); // read by the binding before the engine told it to stop
  t.same(calls.slice(beforeC).map((x) => x[0]), ['onSyn'],
    'an arm the binding made before it stopped stands: the engine would arm the flow too');
  const off = calls.findIndex((x) => x[0] === 'onSyn' && x[1] === undefined);
  t.ok(off > 0, 'half the inspecting flows busy: the binding stops arming on SYNs');
  const d = new Conversation({ sport: 40004 });
  feed(d.handshake()[0]!, true);
  t.equal(calls.filter((x) => x[0] === 'expect').length, 2, 'and arms a logged SYN itself again');
  for (const settle of pending.splice(0)) settle();
  await new Promise((r) => setImmediate(r));
  const expects = calls.filter((x) => x[0] === 'expect').length;
  feed(new Conversation({ sport: 40003 }).handshake()[0]!, true, true);
  const on = calls.slice(off + 1).find((x) => x[0] === 'onSyn');
  t.ok(on !== undefined && on[1] !== undefined, 'room again: arming on SYNs resumes at the next packet');
  t.equal(calls.filter((x) => x[0] === 'expect').length, expects, 'and the engine leaves a SYN the binding armed to it');
  feed(new Conversation({ sport: 40005 }).handshake()[0]!, true);
  t.equal(calls.filter((x) => x[0] === 'expect').length, expects + 1,
    'a logged SYN the binding did not arm (a repeat, or while it pauses) the engine arms itself');
  // The binding arms no SYN it remembers; were it to, on a repeated SYN with a lower TTL, the
  // engine replaces that arm with one holding the first SYN's TTL.
  const e = new Conversation({ sport: 40006 });
  const [eSyn] = e.handshake();
  feed(eSyn!, true);
  const eKey = [...engine.table.all()].at(-1)!.key;
  const lowTtl = buildTcpPacket({ src: e.client, dst: e.server, sport: e.sport, dport: e.dport, seq: 1000, flags: SYN, window: 64240,
    ttl: 3, options: { mss: 1460, wscale: 7, sackPermitted: true } });
  let before = calls.length;
  feed(lowTtl, true, true);
  const again = calls.slice(before);
  t.same(again.map((x) => x[0]), ['forget', 'forget', 'expect'], 'a binding\'s arm with a lower TTL than the first SYN\'s is taken back and replaced');
  t.equal((again[2]![4] as NextSegmentChecks).minTtl, 64, 'by the engine\'s, with the first SYN\'s TTL');
  // A SYN of a flow the engine would not arm (it is past its handshake): the binding's arm is taken back.
  feed(e.handshake()[1]!, true);
  before = calls.length;
  feed(eSyn!, true, true);
  t.same(calls.slice(before).filter((x) => x[1] === eKey).at(-1), ['forget', eKey, false],
    'a binding\'s arm on a flow the engine would not arm is taken back');
});

t.test('a SYN the binding armed on a flow a newFlow hook decides at once: the arm is taken back', async (t) => {
  const { engine, calls, feed } = armingEngine({ synArming: true, hooks: { newFlow: () => 'allow' } });
  const syn = new Conversation().handshake()[0]!;
  feed(syn, true, true);
  const tcp = decodeTcp(syn);
  t.same(calls.filter((x) => x[0] !== 'onSyn'), [['forget', engine.table.keyOf(tcp, srcIsLow(tcp)), false]],
    'taken back once the packet is handled');
});

t.test('the engine arms a new flow on its SYN, tells the SYN-ACK, and takes the arm back at the hello', async (t) => {
  const { engine, sink, calls, feed } = armingEngine();
  const c = new Conversation();
  const [syn, synAck] = c.handshake();
  feed(syn!);
  const key = [...engine.table.all()][0]!.key;
  t.equal(calls.length, 1, 'armed on the SYN');
  const [what, k, clientLow, seq, checks, arm] = calls[0]!;
  t.equal(what, 'expect');
  t.equal(k, key);
  t.equal(clientLow, srcIsLow(decodeTcp(syn!)), 'the client side of the key');
  t.equal(seq, 1001, 'the hello starts one after the SYN');
  t.match(checks, { verifyChecksum: true, minTtl: 64, tsMin: undefined, ackMin: undefined });
  t.same(arm, { mark: 0x300, allowMark: 0x100, mask: 0x300, maxHelloBytes: 65536, strict: true, answerMark: 0 });
  feed(synAck!);
  t.same(calls[1], ['answered', key, 5001], 'the SYN-ACK is told, the arm kept');
  const helloId = feed(c.send(clientHello({ sni: 'allowed.test' })));
  t.same(calls[2], ['forget', key, true], 'the hello takes the arm back, as a packet the binding saw after it');
  // What the binding gives an allowed plain hello is what the engine gave it.
  t.same(sink.verdicts.get(helloId), { verdict: NF_REPEAT, mark: 0x300, order: sink.verdicts.get(helloId)!.order },
    'the engine repeats an allowed first hello with the inspect mark, as the binding does');
});

t.test('the answer mark only for a hello whose echoed session id holds no 0x16', async (t) => {
  let checked = 0;
  for (const f of fixtures) {
    const hello = Buffer.from(firstRecord(f.bytes));
    if (simpleHelloName(hello, MAX) === null) continue;
    checked++;
    const sid = hello[43]!;
    t.not(sid, 0x16, `${f.name}: a session id length that is no record type`);
    for (let i = 44; i < 44 + sid; i++) if (hello[i] === 0x16) hello[i] = 0x17;
    t.ok(echoCannotPassForServerHello(hello), `${f.name}: no 0x16 in the echo: the mark`);
    for (let i = 44; i < 44 + sid; i++) {
      const one = Buffer.from(hello);
      one[i] = 0x16;
      if (echoCannotPassForServerHello(one)) t.fail(`${f.name}: 0x16 at session id byte ${i - 44} passed`);
    }
  }
  t.ok(checked >= 3, `real hellos read (${checked})`);
  const h = Buffer.from(helloWith([sniExt('allowed.test')]));
  t.equal(h[43], 0, 'an empty session id');
  t.ok(echoCannotPassForServerHello(h), 'an empty session id: the mark');
  h[43] = 0x16;
  t.notOk(echoCannotPassForServerHello(h), 'a session id 22 bytes long: its length byte could start a record');
  t.notOk(echoCannotPassForServerHello(h.subarray(0, 43)), 'cut before the session id: no mark');
});

t.test('the rules end a flow on its server\'s ServerHello: the engine ends it if it waits for nothing else', async (t) => {
  // The binding hands the copy over cut to its headers, the IP length rewritten to match.
  const answerCopy = (c: Conversation) => c.reply(new Uint8Array(0));
  {
    const { calls, feed } = armingEngine({ kernelAnswers: true });
    const c = new Conversation();
    c.handshake().forEach((p) => feed(p));
    t.equal((calls[0]![5] as HelloArm).answerMark, 0x400, 'with kernelAnswers the arm carries the answer mark');
  }
  {
    const { calls, feed } = armingEngine();
    new Conversation().handshake().forEach((p) => feed(p));
    t.equal((calls[0]![5] as HelloArm).answerMark, 0, 'without it, none: the rules would never tell the engine');
  }
  {
    // Only the sink sets the answer bit: a packet that comes with it (another rule's mark) loses it
    // in the engine's verdict, which the rules save to the connection; other bits stay.
    const { sink, feed } = armingEngine({ kernelAnswers: true });
    const c = new Conversation();
    c.handshake().forEach((p) => feed(p));
    const hello = feed(c.send(clientHello({ sni: 'allowed.test' })), false, false, false, 0x10400);
    t.equal(sink.verdicts.get(hello)?.mark, 0x10300, 'the engine\'s inspect verdict clears the answer bit');
    const marked = feed(c.send(Uint8Array.of(0x17, 3, 3, 0, 1, 0)), false, false, false, 0x700);
    const v = sink.verdicts.get(marked);
    t.ok(v?.verdict === NF_REPEAT && ((v.mark ?? 0) & 0x400) === 0, 'a packet carrying a mark value and the answer bit too is repeated without the bit');
  }
  const { engine, sink, feed } = armingEngine({ kernelAnswers: true });
  const stat = (name: string) => engine.stats.events.get(name) ?? 0;
  const a = new Conversation();
  a.handshake().forEach((p) => feed(p));
  feed(a.send(clientHello({ sni: 'allowed.test' })));
  const flow = [...engine.table.all()][0]!;
  t.equal(flow.phase, 'inspecting', 'after an allowed hello the flow waits for the client\'s next record');
  const copy = feed(answerCopy(a), true, false, true);
  t.equal(stat('kernel_answers'), 1, 'the copy ends it');
  t.equal(engine.table.get(flow.key), undefined, 'the flow is done');
  t.equal(sink.verdicts.get(copy)?.verdict, 1, 'the copy gets an accept, which the binding does not send');
  const straggler = feed(a.send(Uint8Array.of(0x14, 3, 3, 0, 1, 1)));
  t.same(sink.verdicts.get(straggler), { verdict: NF_REPEAT, mark: 0x100, order: sink.verdicts.get(straggler)!.order },
    'a packet of it queued before the rules allowed it gets the allow mark');

  // Copies that end nothing: from the client's side, of no flow, and of a flow that waits for
  // something else (a second hello sent before the server answered, its decision pending).
  const pending: Array<() => void> = [];
  let n = 0;
  const slow: DecideFn = () => (++n === 1 ? 'allow' : new Promise((resolve) => pending.push(() => resolve('block'))));
  const s = armingEngine({ kernelAnswers: true, decide: slow });
  const b = new Conversation({ sport: 40100 });
  b.handshake().forEach((p) => s.feed(p));
  s.feed(b.send(clientHello({ sni: 'allowed.test' })));
  s.feed(b.send(new Uint8Array(0)), true, false, true);
  s.feed(answerCopy(new Conversation({ sport: 40101 })), true, false, true);
  b.serverFlight();
  s.feed(b.send(clientHello({ sni: 'blocked.test' })));
  const held = [...s.engine.table.all()][0]!;
  t.equal(held.heldCount, 1, 'a second hello, its decision pending');
  s.feed(answerCopy(b), true, false, true);
  t.equal(s.engine.stats.events.get('kernel_answer_ignored'), 3, 'a client packet, no flow, a decision pending: ignored');
  t.equal(s.engine.stats.events.get('kernel_answers') ?? 0, 0);
  pending.splice(0).forEach((f) => f());
  await new Promise((r) => setImmediate(r));
  t.equal(s.engine.table.get(held.key), undefined, 'the second hello\'s block ends the flow');
  t.equal(s.engine.stats.events.get('server_resets'), 1, 'and resets the server');
});

t.test('what the engine does not arm, and what disarms', async (t) => {
  {
    const { calls, feed } = armingEngine({ bindingHellos: false });
    const c = new Conversation();
    c.handshake().forEach((p) => feed(p));
    feed(c.send(clientHello({ sni: 'allowed.test' })));
    t.equal(calls.length, 0, 'not without bindingHellos');
  }
  {
    const { calls, feed } = armingEngine();
    const c = new Conversation();
    feed(c.synWithData('GET / HTTP/1.1\r\n'));
    t.equal(calls.length, 0, 'not a SYN with data');
  }
  {
    const { calls, feed } = armingEngine();
    const c = new Conversation();
    const [syn] = c.handshake();
    feed(syn!);
    feed(syn!);
    t.same(calls.map((x) => x[0]), ['expect', 'forget', 'expect'], 'a retransmitted SYN disarms and arms again');
  }
  {
    const { calls, feed } = armingEngine();
    const c = new Conversation();
    const [syn] = c.handshake();
    feed(syn!);
    feed(c.reply('data before any SYN-ACK'));
    t.same(calls.map((x) => x[0]), ['expect', 'forget'], 'a server packet other than the SYN-ACK disarms');
  }
});

t.test('the binding refuses every fake hello the engine drops, with the checks armed on the SYN', async (t) => {
  const { engine, calls, feed } = armingEngine();
  const c = new Conversation();
  const [syn, synAck] = c.handshake();
  feed(syn!);
  feed(synAck!);
  const flow = [...engine.table.all()][0]!;
  const packed = Uint32Array.from(packChecks(calls[0]![4] as NextSegmentChecks));
  const hello = clientHello({ sni: 'allowed.test' });
  let seed = 0x1234567;
  const rand = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  let passed = 0;
  const refused = { checksum: 0, ttl: 0, ack: 0 };
  for (let i = 0; i < 2000; i++) {
    const bad = { checksum: rand(4) === 0, ttl: rand(4) === 0, ack: rand(4) === 0 };
    const extra = {
      badChecksum: bad.checksum,
      ttl: bad.ttl ? 1 + rand(63) : 64 + rand(192),
      ack: bad.ack ? (c.sseq + 1 + rand(100000)) >>> 0 : c.sseq,
      options: { tsVal: rand(100000), md5: rand(20) === 0 },
    };
    const pkt = c.send(hello, { advance: false, extra });
    const v = readTcp(pkt)!;
    // The binding's whole test of the packet's TCP side (CheckHello): the place, the exact ACK, the fake checks.
    const bindingPasses = v.seq === 1001 && v.ack === 5001 && passesFakeChecks(pkt, 0, packed) === true;
    const engineKeeps = discardReason(flow, decodeTcp(pkt), { verifyChecksum: true, strict: true, serverObserved: true }) === undefined;
    if (bindingPasses && !engineKeeps) t.fail(`packet ${i}: the binding passes what the engine drops (${JSON.stringify(extra)})`);
    if (bindingPasses) passed++;
    else for (const k of Object.keys(refused) as Array<keyof typeof refused>) if (bad[k]) refused[k]++;
  }
  t.ok(passed > 200, `${passed} genuine hellos passed`);
  for (const [k, n] of Object.entries(refused)) t.ok(n > 100, `fakes with a bad ${k} refused (${n})`);
});
