/**
 * ClientHelloReader on real ClientHellos (test/fixtures/tls, see its README): the values tshark
 * reports, and the same result for every prefix, every split, byte by byte and re-framed into
 * 1-byte records. Also a hello made by Node's own TLS client.
 */
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { ClientHelloReader, type ClientHello, type TlsResult } from '../../../src/protocols/tls/clienthello.js';
import { bytewise, concat, feedAll, handshakeBytes, loadSegments, loadStream, prng, reframe, splitAt } from './helpers.js';

interface Expected {
  sni: string | null;
  alpn: string[] | null;
  supportedVersions: number[];
  recordVersion: number;
  /** tshark -e tls.handshake.ja3 */
  ja3Hash: string;
  /** 0xfe0d present: real ECH, or Chrome's GREASE ECH, which looks the same on the wire by design. */
  ech?: boolean;
}

/** From NAME.expected.jsonl next to each capture in /work/shared/pcaps and tshark 4.0.17's ja3 field. */
const FIXTURES: Record<string, Expected[]> = {
  'chrome-34-google': [
    { sni: 'google.de', alpn: ['spdy/3', 'spdy/3.1', 'http/1.1'], supportedVersions: [], recordVersion: 0x0301, ja3Hash: 'a607f3a5c94c2ee592af1456f36c8367' },
  ],
  'chrome-1250-kyber': [
    { sni: 'lh3.google.com', alpn: ['h2', 'http/1.1'], supportedVersions: [0x8a8a, 0x0304, 0x0303], recordVersion: 0x0301, ja3Hash: '9d33d8206d4fec4c8b1423c728f4cd3c', ech: true },
  ],
  'tls13-ech': [
    { sni: 'cloudflare-ech.com', alpn: ['h2', 'http/1.1'], supportedVersions: [0x8a8a, 0x0304, 0x0303], recordVersion: 0x0301, ja3Hash: '2fcbf8655473005933c5869b2b5d8044', ech: true },
  ],
  hrr: [
    { sni: null, alpn: null, supportedVersions: [0x0304], recordVersion: 0x0301, ja3Hash: '0f14b679807628ec7f9c02cada3ee941' },
    { sni: null, alpn: null, supportedVersions: [0x0304], recordVersion: 0x0303, ja3Hash: '0f14b679807628ec7f9c02cada3ee941' },
  ],
  'openjdk-25': [
    { sni: 'zeek.org', alpn: ['h2', 'http/1.1'], supportedVersions: [0x0304, 0x0303], recordVersion: 0x0303, ja3Hash: 'bddb16608b241c89053080cf80771423' },
  ],
  wolfssl: [
    { sni: null, alpn: null, supportedVersions: [0x0304, 0x0303, 0x0302], recordVersion: 0x0303, ja3Hash: '39cef737bf0cabc32c28f95d09b97702' },
  ],
  'frag-01': [
    { sni: 'www.google.com', alpn: ['h2', 'http/1.1'], supportedVersions: [], recordVersion: 0x0301, ja3Hash: 'a64c29923906f2a1be278be1da0714fa' },
  ],
  'tls13-draft28': [
    { sni: 'localhost', alpn: null, supportedVersions: [0x7f1c, 0x0303, 0x0302, 0x0301], recordVersion: 0x0301, ja3Hash: '43202faa1c8c1760d6f7f4bd9adde4ab' },
  ],
  'fingerprint-alert': [
    { sni: 'www.google.com', alpn: ['http/1.1', 'h2'], supportedVersions: [], recordVersion: 0x0301, ja3Hash: '39d8c2cad4b5f346d621cbcca5b6189b' },
  ],
  'mlkem-googlevideo': [
    { sni: 'rr4---sn-5hne6nzy.googlevideo.com', alpn: ['h2', 'http/1.1'], supportedVersions: [0x0304, 0x0303], recordVersion: 0x0301, ja3Hash: '6f7889b9fb1a62a9577e685c1fcfa919', ech: true },
  ],
  'no-sni': [
    { sni: null, alpn: null, supportedVersions: [0x0304, 0x0303], recordVersion: 0x0301, ja3Hash: 'c216e752cae6f8755fd27f561d031636' },
  ],
};

function hellos(results: TlsResult[]): ClientHello[] {
  return results.flatMap((r) => (r.kind === 'done' ? [r.hello] : []));
}

for (const [name, expected] of Object.entries(FIXTURES)) {
  t.test(`fixture ${name}`, async (t) => {
    const stream = loadStream(name);
    const whole = feedAll(new ClientHelloReader(), [stream]);
    t.equal(whole.length, expected.length, 'one result per expected hello, nothing else');
    t.same(
      whole.map((r) => r.kind),
      expected.map(() => 'done'),
    );
    const got = hellos(whole);
    got.forEach((hello, i) => {
      const want = expected[i]!;
      t.equal(hello.sni, want.sni, 'sni');
      t.same(hello.alpn, want.alpn, 'alpn');
      t.same(hello.supportedVersions, want.supportedVersions, 'supported_versions');
      t.equal(hello.legacyVersion, 0x0303, 'legacy_version');
      t.equal(hello.recordVersion, want.recordVersion, 'record version');
      t.equal(hello.ja3Hash, want.ja3Hash, 'JA3 hash as tshark computes it');
      t.equal(hello.ech, want.ech ?? false, 'ech');
      t.notOk(hello.sniAmbiguous, 'not ambiguous');
      t.notOk(hello.sniError, 'no name error');
      t.same(hello.duplicateExtensions, [], 'no duplicate extensions');
    });
    // The last hello ends exactly where the fixture was cut: at the end of its record.
    const last = whole[whole.length - 1]!;
    t.equal(last.kind === 'done' && last.consumed, stream.length, 'consumed = end of the record holding the last byte');

    t.same(feedAll(new ClientHelloReader(), loadSegments(name)), whole, 'TCP segments as captured');
    t.same(feedAll(new ClientHelloReader(), bytewise(stream)), whole, 'byte by byte');

    // Every split point into two chunks.
    let splitsOk = true;
    for (let cut = 0; cut <= stream.length && splitsOk; cut++) {
      const split = feedAll(new ClientHelloReader(), splitAt(stream, cut));
      if (JSON.stringify(split) !== JSON.stringify(whole)) {
        splitsOk = false;
        t.fail(`split at ${cut} differs`, { found: split, wanted: whole });
      }
    }
    t.ok(splitsOk, `all ${stream.length + 1} two-chunk splits agree`);

    // The same with the stream so far given as history (the body read in place, not copied).
    let historyOk = JSON.stringify(feedAll(new ClientHelloReader(), bytewise(stream), stream)) === JSON.stringify(whole);
    for (let cut = 0; cut <= stream.length && historyOk; cut++) {
      historyOk = JSON.stringify(feedAll(new ClientHelloReader(), splitAt(stream, cut), stream)) === JSON.stringify(whole);
    }
    t.ok(historyOk, 'with history: byte by byte and every two-chunk split agree');

    // Every strict prefix of the first hello needs more (each fixture's hello ends with its record).
    const firstEnd = whole[0]!.kind === 'done' ? (whole[0] as { consumed: number }).consumed : 0;
    let prefixesOk = true;
    for (let n = 0; n < firstEnd && prefixesOk; n++) {
      const r = new ClientHelloReader().feed(stream.subarray(0, n));
      if (r.kind !== 'needMore') {
        prefixesOk = false;
        t.fail(`prefix ${n} gave ${r.kind}`, { result: r });
      }
    }
    t.ok(prefixesOk, `every prefix shorter than the hello needs more`);

    // Re-recorded as 1-byte records with random record versions (and as random-size records).
    const rand = prng(name.length * 7919);
    const handshake = handshakeBytes(stream);
    for (const [label, reframed] of [
      ['1-byte records', reframe(handshake, 1, () => Math.floor(rand() * 0x10000))],
      ['random-size records', reframe(handshake, () => 1 + Math.floor(rand() * 300))],
    ] as const) {
      const again = hellos(feedAll(new ClientHelloReader(), [reframed]));
      // A hello over many records, fed byte by byte with history: copied from its second record on.
      t.same(hellos(feedAll(new ClientHelloReader(), bytewise(reframed), reframed)), again, `${label}: the same with history, byte by byte`);
      t.equal(again.length, got.length, `${label}: same number of hellos`);
      again.forEach((hello, i) => {
        const { recordVersion: _v, recordCount: _c, ...rest } = hello;
        const { recordVersion: _v2, recordCount: _c2, ...want } = got[i]!;
        t.same(rest, want, `${label}: hello ${i} identical but for record fields`);
      });
      if (label === '1-byte records') {
        t.same(hellos(feedAll(new ClientHelloReader(), bytewise(reframed))), again, '1-byte records fed byte by byte');
        t.equal(again[0]!.recordCount, got[0]!.handshakeLength + 4, 'one record per handshake byte');
      }
    }
  });
}

t.test('the minimal prefix that completes the hello answers done', async (t) => {
  const stream = loadStream('chrome-34-google');
  const reader = new ClientHelloReader();
  t.equal(reader.feed(stream.subarray(0, stream.length - 1)).kind, 'needMore');
  const r = reader.feed(stream.subarray(stream.length - 1));
  t.equal(r.kind, 'done');
  t.equal(reader.unread, 0);
});

t.test('hrr: the second hello follows a change_cipher_spec record, offsets count from the stream start', async (t) => {
  const segments = loadSegments('hrr');
  const reader = new ClientHelloReader();
  const first = reader.feed(segments[0]!);
  t.equal(first.kind, 'done');
  t.equal(first.kind === 'done' && first.consumed, segments[0]!.length);
  t.equal(first.kind === 'done' && first.hello.keyShareGroups.join(), String(0x15), 'first key share: secp224r1 (21)');
  const second = reader.feed(segments[1]!);
  t.equal(second.kind, 'done');
  t.equal(second.kind === 'done' && second.consumed, segments[0]!.length + segments[1]!.length);
  t.same(second.kind === 'done' && second.hello.keyShareGroups, [0x17], 'second key share: secp256r1 as the server asked');
  t.equal(second.kind === 'done' && second.hello.recordCount, 1);

  // Both hellos in one chunk: done, then the unread remainder gives the second one.
  const whole = concat(segments);
  const r2 = new ClientHelloReader();
  const a = r2.feed(whole);
  t.equal(a.kind, 'done');
  t.equal(r2.unread, whole.length - segments[0]!.length, 'unread = everything after the first hello');
  const b = r2.feed(whole.subarray(whole.length - r2.unread));
  t.equal(b.kind, 'done');
  t.equal(b.kind === 'done' && b.consumed, whole.length);

  // reset() starts a new stream: offset 0, and the CCS record is no longer acceptable first.
  r2.reset();
  t.same(r2.feed(segments[1]!), { kind: 'invalid', reason: 'change_cipher_spec record before ClientHello' });
  r2.reset();
  t.equal(r2.feed(segments[0]!).kind, 'done');
});

t.test('after done: a non-hello handshake message or an alert ends the search', async (t) => {
  const first = loadSegments('hrr')[0]!;
  const reader = new ClientHelloReader();
  t.equal(reader.feed(first).kind, 'done');
  // TLS 1.2 ClientKeyExchange (16) in a handshake record.
  t.same(reader.feed(new Uint8Array([22, 3, 3, 0, 5, 16, 0, 0, 1, 0])), {
    kind: 'invalid',
    reason: 'handshake type 16 is not client_hello',
  });
  const r2 = new ClientHelloReader();
  r2.feed(first);
  // 0-RTT application data is skipped, then an alert is final.
  t.equal(r2.feed(new Uint8Array([23, 3, 3, 0, 3, 1, 2, 3])).kind, 'needMore');
  t.same(r2.feed(new Uint8Array([21, 3, 3, 0, 2, 2, 40])), { kind: 'invalid', reason: 'alert record after ClientHello' });
  t.same(r2.feed(first), { kind: 'invalid', reason: 'alert record after ClientHello' }, 'final until reset');
});

t.test("Node's own TLS client: the SNI and ALPN it was given", async (t) => {
  const captured: Buffer[] = [];
  let gotHello!: () => void;
  const helloSeen = new Promise<void>((resolve) => (gotHello = resolve));
  const reader = new ClientHelloReader();
  const results: TlsResult[] = [];
  const server = net.createServer((socket) => {
    socket.on('data', (data: Buffer) => {
      captured.push(data);
      const r = reader.feed(data);
      if (r.kind !== 'needMore') {
        results.push(r);
        gotHello();
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = tls.connect({ host: '127.0.0.1', port, servername: 'Blocked.Test.', ALPNProtocols: ['h2', 'http/1.1'] });
  client.on('error', () => undefined);
  await helloSeen;
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));

  t.equal(results.length, 1);
  const r = results[0]!;
  t.equal(r.kind, 'done');
  if (r.kind !== 'done') return;
  t.equal(r.hello.sni, 'blocked.test', 'normalised: lowercase, no trailing dot');
  t.same(r.hello.alpn, ['h2', 'http/1.1']);
  t.ok(r.hello.supportedVersions.includes(0x0304), 'offers TLS 1.3');
  t.match(r.hello.ja4, /^t13d\d{4}h2_[0-9a-f]{12}_[0-9a-f]{12}$/);
  const stream = concat(captured);
  t.same(feedAll(new ClientHelloReader(), bytewise(stream.subarray(0, r.consumed))), [r], 'byte by byte agrees');
});
