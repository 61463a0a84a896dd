/**
 * ClientHelloReader on hostile and odd input (EVASION.md 11, 19, 20, 25, 27): GREASE, permuted
 * extensions, padding, several names, overrunning lengths, truncation, huge lengths, streams
 * that are not TLS, records a server rejects before the hello, SSLv2-format hellos.
 */
import t from 'tap';
import { ClientHelloReader, type ClientHello, type TlsResult } from '../../../src/protocols/tls/clienthello.js';
import {
  alpnData,
  bytewise,
  concat,
  feedAll,
  handshakeBytes,
  helloMessage,
  helloRecord,
  loadStream,
  parseOnce,
  prng,
  reframe,
  sniData,
  u16,
  u16List,
  vec16,
  vec8,
  type Extension,
} from './helpers.js';

function done(result: TlsResult): ClientHello {
  if (result.kind !== 'done') throw new Error(`expected done, got ${JSON.stringify(result)}`);
  return result.hello;
}

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);
const ascii = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));

/** A typical modern extension set; SNI first so tests can swap it. */
function typicalExtensions(sni: number[] = sniData('example.com')): Extension[] {
  return [
    [0x0000, sni],
    [0x0010, alpnData('h2', 'http/1.1')],
    [0x002b, vec8([0x03, 0x04, 0x03, 0x03])],
    [0x000a, u16List([0x001d, 0x0017])],
    [0x000d, u16List([0x0403, 0x0804])],
    [0x000b, vec8([0])],
    [0x0033, vec16([...u16(0x001d), ...vec16(new Array<number>(32).fill(9))])],
  ];
}

t.test('a built hello parses into every field', async (t) => {
  const hello = done(parseOnce(helloRecord({ sessionId: new Array(32).fill(1), extensions: typicalExtensions() })));
  t.equal(hello.sni, 'example.com');
  t.same(hello.alpn, ['h2', 'http/1.1']);
  t.same(hello.supportedVersions, [0x0304, 0x0303]);
  t.same(hello.groups, [0x1d, 0x17]);
  t.same(hello.signatureAlgorithms, [0x0403, 0x0804]);
  t.same(hello.ecPointFormats, [0]);
  t.same(hello.keyShareGroups, [0x1d]);
  t.same(hello.extensions, [0, 16, 43, 10, 13, 11, 51]);
  t.equal(hello.sessionIdLength, 32);
  t.same(hello.compressionMethods, [0]);
  t.equal(hello.recordCount, 1);
  t.notOk(hello.ech || hello.psk || hello.earlyData);
  t.equal(hello.paddingLength, null);
});

t.test('GREASE values everywhere are kept in the hello and skipped by the fingerprints', async (t) => {
  const hello = done(
    parseOnce(
      helloRecord({
        ciphers: [0x0a0a, 0x1301],
        extensions: [
          [0x1a1a, []],
          ...typicalExtensions(),
          [0x2a2a, [0]],
        ],
      }),
    ),
  );
  t.same(hello.extensions.slice(0, 1), [0x1a1a]);
  t.notMatch(hello.ja3, /6682|10794/, 'no GREASE in JA3 (0x1a1a=6682, 0x2a2a=10794)');
  t.match(hello.ja4, /^t13d0107h2_/, '1 cipher, 7 extensions without GREASE');
});

t.test('permuted extensions: same name and JA4, different JA3', async (t) => {
  const stream = loadStream('chrome-1250-kyber');
  const original = done(parseOnce(stream));
  const message = handshakeBytes(stream);
  const { head, extensions } = splitExtensions(message);
  const rand = prng(42);
  for (let round = 0; round < 20; round++) {
    const shuffled = [...extensions];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    const permuted = done(parseOnce(reframe(rebuild(head, shuffled), 1 << 14)));
    t.equal(permuted.sni, original.sni);
    t.same(permuted.alpn, original.alpn);
    t.equal(permuted.ja4, original.ja4, `round ${round}: JA4 sorts extensions`);
    if (round === 0) t.not(permuted.ja3, original.ja3, 'JA3 keeps the order');
  }
});

t.test('padding extension', async (t) => {
  const hello = done(parseOnce(helloRecord({ extensions: [...typicalExtensions(), [21, new Array(1000).fill(0)]] })));
  t.equal(hello.paddingLength, 1000);
  t.equal(hello.sni, 'example.com');
});

t.test('server_name: several names, duplicates, empty and odd names', async (t) => {
  const withSni = (...extensions: Extension[]): ClientHello =>
    done(parseOnce(helloRecord({ extensions: [...extensions, ...typicalExtensions().slice(1)] })));

  const two = withSni([0, sniData('allowed.test', 'blocked.test')]);
  t.equal(two.sniAmbiguous, '2 host_name entries');
  t.equal(two.sni, 'allowed.test', 'the first name is still reported');

  const duplicate = withSni([0, sniData('allowed.test')], [0, sniData('blocked.test')]);
  t.equal(duplicate.sniAmbiguous, '2 server_name extensions');
  t.same(duplicate.duplicateExtensions, [0]);

  const empty = withSni([0, sniData('')]);
  t.equal(empty.sniAmbiguous, 'empty host_name');
  t.equal(empty.sni, null);

  t.equal(withSni([0, vec16([])]).sniAmbiguous, 'empty server_name list');
  t.equal(withSni([0, sniData([1, 'other'], 'example.com')]).sniAmbiguous, 'server_name entry of unknown type 1');

  const upper = withSni([0, sniData('WWW.Example.COM.')]);
  t.equal(upper.sni, 'www.example.com', 'lowercase, no trailing dot');
  t.notOk(upper.sniAmbiguous);

  const utf8 = withSni([0, sniData(Buffer.from('bücher.example', 'utf8').toString('latin1'))]);
  t.equal(utf8.sni, null);
  t.match(utf8.sniError, /non-ASCII/);
  t.notOk(utf8.sniAmbiguous);

  t.match(withSni([0, sniData('a..b')]).sniError, /malformed label/);
  t.match(withSni([0, sniData('nul\x00.example')]).sniError, /non-ASCII or control/);
  t.match(withSni([0, sniData(`${'a'.repeat(60)}.`.repeat(5))]).sniError, /too long/);

  t.equal(done(parseOnce(helloRecord({ extensions: typicalExtensions().slice(1) }))).sni, null, 'no SNI at all');
});

t.test('other duplicates, ECH outer name, PSK and early data', async (t) => {
  const hello = done(
    parseOnce(
      helloRecord({
        extensions: [
          ...typicalExtensions(sniData('public.example')),
          [16, alpnData('http/1.1')],
          [0xfe0d, [0, 0, 1, 0, 1, 7]],
          [42, []],
          [41, vec16([]).concat(vec16([]))],
        ],
      }),
    ),
  );
  t.same(hello.duplicateExtensions, [16]);
  t.same(hello.alpn, ['h2', 'http/1.1'], 'the first ALPN extension counts');
  t.equal(hello.ech, true);
  t.equal(hello.sni, 'public.example', 'ECH: the outer name is reported');
  t.equal(hello.earlyData, true);
  t.equal(hello.psk, true);
});

t.test('a hello without extensions (SSL 3.0 / TLS 1.0 style)', async (t) => {
  const hello = done(parseOnce(helloRecord({ legacyVersion: 0x0300 })));
  t.same(hello.extensions, []);
  t.equal(hello.sni, null);
  t.equal(hello.alpn, null);
  t.match(hello.ja4, /^ts3i020000_[0-9a-f]{12}_000000000000$/);
});

/** Each length field of the built hello: offset in the handshake message, size, the field its reason names. */
function lengthFields(): { at: number; size: 1 | 2; max: number; field: RegExp }[] {
  const fields: { at: number; size: 1 | 2; max: number; field: RegExp }[] = [];
  // Handshake header (4) + version (2) + random (32).
  let at = 4 + 2 + 32;
  fields.push({ at, size: 1, max: 0xff, field: /session id/ });
  at += 1 + 3; // session id of 3 bytes below
  fields.push({ at, size: 2, max: 0xfffe, field: /cipher suites/ });
  at += 2 + 4;
  fields.push({ at, size: 1, max: 0xff, field: /compression methods/ });
  at += 1 + 1;
  fields.push({ at, size: 2, max: 0xffff, field: /^extensions length/ });
  at += 2;
  const inner: Record<number, { offset: number; size: 1 | 2; field: RegExp }[]> = {
    0: [
      { offset: 0, size: 2, field: /server_name list/ },
      { offset: 3, size: 2, field: /server_name entry/ },
    ],
    16: [
      { offset: 0, size: 2, field: /ALPN list/ },
      { offset: 2, size: 1, field: /ALPN protocol name/ },
    ],
    43: [{ offset: 0, size: 1, field: /supported_versions/ }],
    10: [{ offset: 0, size: 2, field: /supported_groups/ }],
    13: [{ offset: 0, size: 2, field: /signature_algorithms/ }],
    11: [{ offset: 0, size: 1, field: /ec_point_formats/ }],
    51: [
      { offset: 0, size: 2, field: /key_share client_shares/ },
      { offset: 4, size: 2, field: /key_share key_exchange/ },
    ],
  };
  for (const [type, data] of typicalExtensions()) {
    fields.push({ at: at + 2, size: 2, max: 0xffff, field: new RegExp(`extension 0x${type.toString(16).padStart(4, '0')} length`) });
    for (const f of inner[type] ?? []) {
      fields.push({ at: at + 4 + f.offset, size: f.size, max: f.size === 1 ? 0xff : 0xffff, field: f.field });
    }
    at += 4 + data.length;
  }
  return fields;
}

const OVERRUN_SPEC = { sessionId: [1, 2, 3], ciphers: [0x1301, 0x1302], compression: [0], extensions: typicalExtensions() };

t.test('every length field set to overrun: invalid, and the reason names the field', async (t) => {
  const message = helloMessage(OVERRUN_SPEC);
  const fields = lengthFields();
  t.equal(fields.length, 4 + 7 + 10, 'all length fields of the built hello');
  for (const f of fields) {
    for (const value of [f.max, 1 + readField(message, f.at, f.size)]) {
      const mutated = message.slice();
      writeField(mutated, f.at, f.size, value);
      const result = parseOnce(reframe(mutated, 1 << 14));
      if (value === f.max) {
        t.equal(result.kind, 'invalid', `${f.field} = ${value}`);
        if (result.kind === 'invalid') t.match(result.reason, f.field, `reason: ${result.reason}`);
      } else {
        t.not(result.kind, 'done', `${f.field} + 1 is not a well-formed hello`);
      }
    }
  }
  const tooLong = message.slice();
  writeField(tooLong, 4 + 2 + 32, 1, 33);
  t.same(parseOnce(reframe(tooLong, 1 << 14)), { kind: 'invalid', reason: 'session id length 33 exceeds 32' });
});

t.test('truncated hellos: every shorter handshake length is invalid but one', async (t) => {
  const full = helloMessage(OVERRUN_SPEC);
  const body = full.subarray(4);
  const endOfCompression = 2 + 32 + 1 + 3 + 2 + 4 + 1 + 1;
  for (let n = 0; n < body.length; n++) {
    const message = concat([bytes(1, 0, n >> 8, n & 0xff), body.subarray(0, n)]);
    const result = parseOnce(reframe(message, 1 << 14));
    if (n === endOfCompression) t.equal(result.kind, 'done', 'ends after compression methods: a hello without extensions');
    else if (result.kind !== 'invalid') t.fail(`length ${n}: ${result.kind}`);
  }
  // A declared length longer than what arrives is simply incomplete: needMore, for the caller's timeout.
  t.same(parseOnce(reframe(full, 1 << 14).subarray(0, 100)), { kind: 'needMore' });
  const longer = concat([full, bytes(0)]);
  longer[3] = longer[3]! + 1; // handshake length covers one byte after the extensions block (no carry: checked below)
  t.equal((longer[2]! << 8) | longer[3]!, longer.length - 4);
  t.same(parseOnce(reframe(longer, 1 << 14)), { kind: 'invalid', reason: '1 trailing bytes after extensions' });
  t.same(parseOnce(reframe(concat([bytes(1, 0, 0, 0)]), 1 << 14)), { kind: 'invalid', reason: 'legacy_version truncated' });
});

t.test('huge declared lengths', async (t) => {
  t.same(parseOnce(bytes(22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff)), { kind: 'invalid', reason: 'hello too large' });
  t.same(parseOnce(bytes(22, 3, 1, 0x48, 0x01)), { kind: 'invalid', reason: 'record length 18433 exceeds 18432' });
  t.same(parseOnce(bytes(22, 3, 1, 0x48, 0x00)), { kind: 'needMore' }, '2^14 + 2048 is accepted');
  const stream = loadStream('chrome-1250-kyber');
  t.same(new ClientHelloReader({ maxHelloBytes: 1000 }).feed(stream), { kind: 'invalid', reason: 'hello too large' });
  t.equal(new ClientHelloReader({ maxHelloBytes: 1747 }).feed(stream).kind, 'done', 'a limit equal to the length is fine');
  t.throws(() => new ClientHelloReader({ maxHelloBytes: 0 }), { code: 'ERR_INVALID_OPTION' });
  t.equal(parseOnce(bytes(22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x00)).kind, 'needMore', '65536 is the default limit');
  t.same(parseOnce(bytes(22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x01)), { kind: 'invalid', reason: 'hello too large' });
});

t.test('streams that are not TLS', async (t) => {
  for (const text of ['GET / HTTP/1.1\r\nHost: example.com\r\n\r\n', 'SSH-2.0-OpenSSH_9.6\r\n', 'CONNECT x:443 HTTP/1.1\r\n', '\x00\x00']) {
    t.same(parseOnce(ascii(text)), { kind: 'notTls' }, JSON.stringify(text.slice(0, 12)));
    t.same(feedAll(new ClientHelloReader(), bytewise(ascii(text))), [{ kind: 'notTls' }], 'decided on the first byte');
  }
  t.same(parseOnce(bytes(21, 0x47)), { kind: 'notTls' }, 'an alert type byte without TLS version byte');
  t.same(parseOnce(bytes()), { kind: 'needMore' });
  t.same(parseOnce(bytes(22)), { kind: 'needMore' });
});

t.test('records a server rejects before the hello', async (t) => {
  t.same(parseOnce(bytes(21, 3, 1, 0, 2, 2, 40)), { kind: 'invalid', reason: 'alert record before ClientHello' });
  t.same(parseOnce(bytes(20, 3, 3, 0, 1, 1)), { kind: 'invalid', reason: 'change_cipher_spec record before ClientHello' });
  t.same(parseOnce(bytes(23, 3, 3, 0, 1, 1)), { kind: 'invalid', reason: 'application_data record before ClientHello' });
  t.same(parseOnce(bytes(24, 3, 3)), { kind: 'invalid', reason: 'heartbeat record before ClientHello' });
  t.same(parseOnce(bytes(22, 3, 1, 0, 0)), { kind: 'invalid', reason: 'empty handshake record' });
  t.same(parseOnce(bytes(22, 3, 1, 0, 4, 2, 0, 0, 0)), { kind: 'invalid', reason: 'handshake type 2 is not client_hello' });
  // A record of another type between two records of the hello (RFC 8446 section 5.1 forbids it).
  const message = handshakeBytes(loadStream('chrome-34-google'));
  const interleaved = concat([reframe(message.subarray(0, 50), 100), bytes(20, 3, 3, 0, 1, 1), reframe(message.subarray(50), 1000)]);
  t.same(parseOnce(interleaved), { kind: 'invalid', reason: 'change_cipher_spec record inside ClientHello' });
  const unknown = concat([reframe(message.subarray(0, 50), 100), bytes(99, 3, 3, 0, 1, 1)]);
  t.same(parseOnce(unknown), { kind: 'invalid', reason: 'unknown record type 99' });
  // Final results repeat until reset.
  const reader = new ClientHelloReader();
  reader.feed(bytes(21, 3, 1));
  t.same(reader.feed(loadStream('chrome-34-google')), { kind: 'invalid', reason: 'alert record before ClientHello' });
  reader.reset();
  t.equal(reader.feed(loadStream('chrome-34-google')).kind, 'done');
});

t.test('SSLv2-format hello', async (t) => {
  // 2-byte header with the top bit set, CLIENT-HELLO (1), version 3.1, then cipher specs etc.
  const v2 = bytes(0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10, 0x07, 0x00, 0xc0);
  t.same(parseOnce(v2), { kind: 'invalid', reason: 'SSLv2-format ClientHello' });
  t.same(feedAll(new ClientHelloReader(), bytewise(v2)), [{ kind: 'invalid', reason: 'SSLv2-format ClientHello' }]);
  t.same(parseOnce(bytes(0x80, 0x2e, 0x05, 0x03)), { kind: 'notTls' }, 'top bit set but no CLIENT-HELLO');
});

t.test('a hello followed by more handshake bytes in the same record', async (t) => {
  const message = helloMessage({ extensions: typicalExtensions() });
  const extra = bytes(1, 0, 0); // start of another handshake message
  const record = reframe(concat([message, extra]), 1 << 14);
  const reader = new ClientHelloReader();
  const r = reader.feed(record);
  t.equal(r.kind, 'done');
  t.equal(r.kind === 'done' && r.consumed, record.length, 'consumed reaches the end of the record');
  t.equal(reader.unread, 3);
  t.same(reader.feed(record.subarray(record.length - 3)), { kind: 'needMore' }, 'the next message starts there');
  const byteByByte = feedAll(new ClientHelloReader(), bytewise(record));
  t.same(byteByByte, [r, { kind: 'needMore' }]);
});

/** Handshake message split into everything before the extensions block and the extensions. */
function splitExtensions(message: Uint8Array): { head: Uint8Array; extensions: Uint8Array[] } {
  let at = 4 + 2 + 32;
  at += 1 + message[at]!;
  at += 2 + ((message[at]! << 8) | message[at + 1]!);
  at += 1 + message[at]!;
  const head = message.subarray(0, at);
  const extensions: Uint8Array[] = [];
  for (let p = at + 2; p < message.length; ) {
    const length = (message[p + 2]! << 8) | message[p + 3]!;
    extensions.push(message.subarray(p, p + 4 + length));
    p += 4 + length;
  }
  return { head, extensions };
}

function rebuild(head: Uint8Array, extensions: Uint8Array[]): Uint8Array {
  const block = concat(extensions);
  const message = concat([head, bytes(...u16(block.length)), block]);
  const length = message.length - 4;
  message[1] = length >> 16;
  message[2] = (length >> 8) & 0xff;
  message[3] = length & 0xff;
  return message;
}

function readField(b: Uint8Array, at: number, size: 1 | 2): number {
  return size === 1 ? b[at]! : (b[at]! << 8) | b[at + 1]!;
}

function writeField(b: Uint8Array, at: number, size: 1 | 2, value: number): void {
  if (size === 1) b[at] = value & 0xff;
  else {
    b[at] = (value >> 8) & 0xff;
    b[at + 1] = value & 0xff;
  }
}
