/**
 * The binding's reader thread allows a client's first data after a ClientHello by itself
 * (NfQueue.expectAfterHello): it must never let through what the engine would not. These tests
 * hold its two pure readers, exported by the addon, against the JavaScript they stand in for:
 * the connection key (src/flow/key.ts) and the analyzer's end of inspection after a first hello
 * (src/protocols/dispatch.ts), over crafted and random records.
 */
import t from 'tap';
import { bindingReaders, packChecks } from '../../src/capture/queue.js';
import { Engine } from '../../src/filter/engine.js';
import { discardReason, type NextSegmentChecks } from '../../src/flow/tcp.js';
import { decodeIp } from '../../src/packet/decode.js';
import { flowKey, srcIsLow } from '../../src/flow/key.js';
import { createAnalyzer } from '../../src/protocols/dispatch.js';
import { Conversation, RecordingSink, clientHello } from '../helpers/tcp.js';
import { buildTcpPacket } from '../../src/packet/build.js';
import { tcpChecksumOk } from '../../src/packet/checksum.js';
import { ACK, PSH } from '../../src/packet/types.js';

const { endsAfterHello, readTcp, passesFakeChecks } = bindingReaders();

/**
 * Whether the analyzer ends inspection on `next`, fed after a complete first ClientHello, the
 * server having answered it (the binding checks that of the packet: ackAbove).
 */
function analyzerEnds(next: Uint8Array, answered = true): boolean {
  const a = createAnalyzer();
  const hello = clientHello({ sni: 'allowed.test' });
  const first = a.feed(hello, 0);
  if (!first.some((e) => e.kind === 'unit')) throw new Error('the hello was not read');
  if (a.recordBoundary?.() !== hello.length) throw new Error('the analyzer does not wait at the record boundary');
  if (answered) a.serverAnswered?.();
  return a.feed(next, hello.length).some((e) => e.kind === 'end');
}

const rec = (type: number, body: number[]) => [type, 3, 3, body.length >> 8, body.length & 0xff, ...body];
const CCS = rec(0x14, [1]);

t.test('the records that end inspection, as the engine reads them', async (t) => {
  const cases: Array<[string, number[], boolean]> = [
    ['TLS 1.3 second flight: ChangeCipherSpec, then an encrypted record', [...CCS, ...rec(0x17, [9, 9, 9])], true],
    ['an encrypted record alone', rec(0x17, [1, 2, 3]), true],
    ['TLS 1.2 ClientKeyExchange (handshake type 16)', rec(0x16, [16, 0, 0, 2, 1, 2]), true],
    ['two ChangeCipherSpecs, then application data', [...CCS, ...CCS, 0x17], true],
    ['an alert', rec(0x15, [2, 40]), true],
    ['one byte of application data', [0x17], true],
    ['a second ClientHello', rec(0x16, [1, 0, 0, 4, 3, 3, 0, 0]), false],
    ['a ChangeCipherSpec, then a second ClientHello', [...CCS, ...rec(0x16, [1, 0, 0, 0])], false],
    ['a handshake header without its first body byte', [0x16, 3, 3, 0, 4], false],
    ['half a record header', [0x16, 3, 3], false],
    ['a ChangeCipherSpec alone', CCS, false],
    ['a ChangeCipherSpec cut short', [0x14, 3, 3, 0, 1], false],
    ['nothing', [], false],
  ];
  for (const [what, bytes, ends] of cases) {
    const b = Uint8Array.from(bytes);
    t.equal(endsAfterHello(b), ends, `binding: ${what}`);
    if (ends) t.ok(analyzerEnds(b), `engine agrees: ${what}`);
    t.notOk(analyzerEnds(b, false), `before the server's answer the engine ends nothing: ${what}`);
  }
});

t.test('random records: the binding never ends inspection where the engine would not', async (t) => {
  let seed = 0x2545f491;
  const rand = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const types = [0x14, 0x14, 0x16, 0x16, 0x17, 0x15, 0x18, 0x00, 0xff];
  let ends = 0;
  let disagreements = 0;
  for (let i = 0; i < 20000; i++) {
    const bytes: number[] = [];
    const records = 1 + rand(3);
    for (let r = 0; r < records; r++) {
      const type = types[rand(types.length)]!;
      const len = rand(5) === 0 ? 0 : 1 + rand(6);
      const body = Array.from({ length: len }, () => (rand(3) === 0 ? 1 : rand(256)));
      bytes.push(type, 3, rand(5), len >> 8, len & 0xff, ...body);
    }
    const b = Uint8Array.from(bytes.slice(0, rand(bytes.length + 1)));
    if (!endsAfterHello(b)) continue;
    ends++;
    if (!analyzerEnds(b)) disagreements++;
  }
  t.ok(ends > 1000, `the binding ended inspection on ${ends} of them`);
  t.equal(disagreements, 0, 'the engine ended it on every one of those');
});

t.test("the binding's connection key is the engine's, both ways, IPv4 and IPv6", async (t) => {
  const convs = [
    // Ports from 0xd800 to 0xdfff are lone surrogates in a key: they must come through as they are.
    new Conversation(), new Conversation({ client: '10.0.2.9', server: '10.0.1.1', sport: 0xde40 }),
    new Conversation({ client: 'fd00::2', server: 'fd00:1::2', sport: 50000, dport: 443 }),
    new Conversation({ client: 'fd00:1::2', server: 'fd00::2', sport: 443, dport: 443 }),
  ];
  for (const c of convs) {
    c.handshake();
    for (const pkt of [c.send('hello'), c.reply('world')]) {
      const d = decodeIp(pkt);
      if (d.kind !== 'tcp') throw new Error('not tcp');
      const v = readTcp(pkt);
      t.ok(v !== null, `${c.client} -> ${c.server}: read`);
      t.same([...v!.key], [...flowKey(d.packet)].map((u) => u.charCodeAt(0)), 'same key');
      t.equal(v!.srcLow, srcIsLow(d.packet), 'same side');
      t.equal(v!.seq, d.packet.seq, 'seq');
      t.equal(v!.payloadLength, d.packet.payload.length, 'payload length');
    }
  }
  t.equal(readTcp(Uint8Array.of(0x45, 0, 0, 20)), null, 'a truncated header is not read');
  const whole = convs[0]!.send('some data');
  t.equal(readTcp(whole.subarray(0, whole.length - 1)), null, 'nor a copy cut short (the engine drops those as undecodable)');
});

t.test("the binding's checks for fakes read what the engine's do: checksum, TTL, timestamp, MD5, malformed options", async (t) => {
  let seed = 0x1234567;
  const rand = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const raws = [undefined, Uint8Array.of(1, 1), Uint8Array.of(5, 1), Uint8Array.of(8, 3, 0), Uint8Array.of(0, 9, 9), Uint8Array.of(254, 4, 0xf9, 0x89)];
  let n = 0;
  for (let i = 0; i < 3000; i++) {
    const v6 = rand(2) === 1;
    const raw = raws[rand(raws.length)];
    const pkt = buildTcpPacket({
      src: v6 ? 'fd00::2' : '10.0.1.2', dst: v6 ? 'fd00:1::2' : '10.0.2.2', sport: 40000 + rand(20000), dport: 443,
      seq: rand(0xffffffff), ack: rand(0xffffffff), flags: ACK | PSH, ttl: 1 + rand(255),
      payload: Uint8Array.from({ length: rand(40) }, () => rand(256)),
      badChecksum: rand(3) === 0,
      options: { tsVal: rand(2) ? rand(0xffffffff) : undefined, md5: rand(4) === 0, ...(raw ? { raw } : {}) },
    });
    const d = decodeIp(pkt);
    if (d.kind !== 'tcp') continue;
    const v = readTcp(pkt)!;
    const o = d.packet.options;
    const same = v.checksumOk === tcpChecksumOk(d.packet) && v.ttl === d.packet.ttl && v.ack === d.packet.ack
      && v.options.malformed === (o.malformed === true) && v.options.md5 === (o.md5 === true)
      && v.options.hasTs === (o.tsVal !== undefined) && (o.tsVal === undefined || v.options.tsVal === o.tsVal);
    if (!same) t.fail(`packet ${i} read differently: ${JSON.stringify({ v, o, ok: tcpChecksumOk(d.packet) })}`);
    n++;
  }
  t.ok(n > 2500, `${n} packets read alike`);
});

t.test("the binding refuses every fake the engine drops, with the checks the engine arms it with", async (t) => {
  // A real connection's state: an engine that arms a recording sink after an allowed hello.
  let checks: NextSegmentChecks | undefined;
  const sink = Object.assign(new RecordingSink(), {
    expectAfterHello: (_k: string, _c: boolean, _s: number, _a: number, _m: number, c: NextSegmentChecks) => void (checks = c),
  });
  const engine = new Engine({ decide: () => 'allow', sink, options: { verifyChecksums: true, strictTcp: true } });
  const c = new Conversation();
  let id = 1;
  const feed = (data: Uint8Array) => engine.handle({ id: id++, mark: 0, data, skbInfo: 0 });
  c.handshake().forEach(feed);
  feed(c.send(clientHello({ sni: 'allowed.test' }), { extra: { options: { tsVal: 1000 } } }));
  const flow = [...engine.table.all()][0]!;
  if (checks === undefined) throw new Error('not armed');
  t.match(checks, { verifyChecksum: true, minTtl: 64, tsMin: 1000, ackAbove: c.sseq });
  const packed = Uint32Array.from(packChecks(checks));
  const synAckNext = c.sseq;
  c.serverFlight();
  const record = Uint8Array.of(0x17, 3, 3, 0, 3, 9, 9, 9);
  let seed = 0x9e3779b9;
  const rand = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const refused = { checksum: 0, ttl: 0, ack: 0, paws: 0, unanswered: 0 };
  let passed = 0;
  for (let i = 0; i < 2000; i++) {
    const bad = { checksum: rand(4) === 0, ttl: rand(4) === 0, ack: rand(4) === 0, paws: rand(4) === 0, unanswered: rand(4) === 0 };
    const extra = {
      badChecksum: bad.checksum,
      ttl: bad.ttl ? 1 + rand(63) : 64 + rand(192),
      // An old ACK; the SYN-ACK's, acknowledging no answer; or one of the server's flight.
      ack: bad.ack ? (synAckNext - 1 - rand(100000)) >>> 0 : bad.unanswered ? synAckNext : (synAckNext + 1 + rand(1200)) >>> 0,
      options: { tsVal: bad.paws ? 1000 - 1 - rand(1000) : 1000 + rand(100000), md5: rand(20) === 0 },
    };
    const pkt = c.send(record, { advance: false, extra });
    const d = decodeIp(pkt);
    if (d.kind !== 'tcp') throw new Error('not tcp');
    const engineKeeps = discardReason(flow, d.packet, { verifyChecksum: true, strict: true, serverObserved: false }) === undefined
      && ((d.packet.ack - synAckNext) | 0) > 0; // the server answered the hello (the engine's answersHello)
    const bindingPasses = passesFakeChecks(pkt, 0, packed);
    if (bindingPasses && !engineKeeps) t.fail(`packet ${i}: the binding passes what the engine drops (${JSON.stringify(extra)})`);
    if (bindingPasses) passed++;
    else for (const k of Object.keys(refused) as Array<keyof typeof refused>) if (bad[k]) refused[k]++;
  }
  t.ok(passed > 200, `${passed} genuine packets passed`);
  for (const [k, n] of Object.entries(refused)) t.ok(n > 100, `fakes with a bad ${k} refused (${n})`);
  const fake = c.send(record, { advance: false, extra: { badChecksum: true } });
  t.equal(passesFakeChecks(fake, 1, packed), true, 'a checksum the kernel has not computed yet is not judged (as the engine)');
  const big = c.send(new Uint8Array(checks.maxPayload + 1), { advance: false });
  t.equal(passesFakeChecks(big, 0, packed), false, "longer than the engine's limits leave room for: refused");
});
