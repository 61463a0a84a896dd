/**
 * JA3 and JA4 against known values: tshark's JA3, FoxIO's published JA4 examples, the JA4 of
 * Chrome as published in FoxIO's JA4 database, and one JA4 computed by hand from the spec.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import {
  ClientHelloReader,
  ja3Hash,
  ja3String,
  ja4,
  ja4Raw,
  type ClientHello,
  type FingerprintInput,
} from '../../../src/protocols/tls/clienthello.js';
import { fingerprintsOf, MAX_REMEMBERED_FINGERPRINTS } from '../../../src/protocols/tls/fingerprints.js';
import { alpnData, feedAll, helloRecord, loadStream, sniData, u16List, vec8, type Extension } from './helpers.js';

function hellosOf(name: string): ClientHello[] {
  return feedAll(new ClientHelloReader(), [loadStream(name)]).flatMap((r) => (r.kind === 'done' ? [r.hello] : []));
}

function parse(bytes: Uint8Array): ClientHello {
  const r = new ClientHelloReader().feed(bytes);
  if (r.kind !== 'done') throw new Error(`expected done, got ${JSON.stringify(r)}`);
  return r.hello;
}

const sha12 = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 12);

t.test('JA3 full strings equal what tshark 4.0.17 prints (tls.handshake.ja3_full)', async (t) => {
  t.equal(hellosOf('hrr')[0]!.ja3, '771,4866-4867-4865-255,11-10-35-22-23-13-43-45-51,21-23-24,0-1-2');
  // Chrome 125 sends GREASE cipher, extensions and group: all removed, as tshark does.
  t.equal(
    hellosOf('chrome-1250-kyber')[0]!.ja3,
    '771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,' +
      '35-13-11-10-27-17513-51-16-43-23-65281-5-45-65037-18-0,25497-29-23-24,0',
  );
  t.equal(hellosOf('chrome-1250-kyber')[0]!.ja3Hash, '9d33d8206d4fec4c8b1423c728f4cd3c');
});

t.test('JA4 by hand for the hrr fixture (FoxIO technical_details/JA4.md)', async (t) => {
  // The first hello of zeek's hrr.pcap, read off its bytes:
  //   t   TLS over TCP
  //   13  supported_versions = [0x0304] (the record and legacy versions are ignored)
  //   i   no server_name extension
  //   04  cipher suites 1302,1303,1301,00ff (no GREASE; the SCSV 00ff counts)
  //   09  extensions 000b,000a,0023,0016,0017,000d,002b,002d,0033 (SNI and ALPN would count too)
  //   00  no ALPN extension
  //   b = sha256 of the ciphers sorted as hex strings, first 12 hex digits
  //   c = sha256 of the extensions sorted (none to drop here: no 0000 or 0010), "_", then the
  //       signature algorithms in the order sent, first 12 hex digits
  const b = sha12('00ff,1301,1302,1303');
  const c = sha12(
    '000a,000b,000d,0016,0017,0023,002b,002d,0033_0403,0503,0603,0807,0808,0809,080a,080b,0804,0805,0806,0401,0501,0601',
  );
  t.equal(b, '16476d049b0b');
  t.equal(c, '78f1d400d464');
  const [first, second] = hellosOf('hrr');
  t.equal(first!.ja4, `t13i040900_${b}_${c}`);
  t.equal(second!.ja4, first!.ja4, 'the retried hello has the same fingerprint');
});

t.test('JA4 of Chrome hellos equals the published Chrome fingerprints', async (t) => {
  // FoxIO's JA4 database (ja4plus-mapping.csv, "Chromium Browser"; ja4db.com "Chrome 120").
  t.equal(hellosOf('chrome-1250-kyber')[0]!.ja4, 't13d1516h2_8daaf6152771_02713d6af862');
  // The same browser when it adds the padding extension (21): 17 extensions, as published for Chrome 120.
  t.equal(hellosOf('tls13-ech')[0]!.ja4, 't13d1517h2_8daaf6152771_b1ff8ab2d16f');
});

/** The JA4.md example hello: ciphers, extensions and signature algorithms in the order sent. */
const SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035];
const SPEC_EXTENSIONS = [0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015];
const SPEC_SIGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

/** Extension data good enough for the parser for each type used by the examples. */
function extensionFor(type: number, sigs: number[]): Extension {
  switch (type) {
    case 0x0000:
      return [type, sniData('example.com')];
    case 0x0010:
      return [type, alpnData('h2', 'http/1.1')];
    case 0x000d:
      return [type, u16List(sigs)];
    case 0x002b:
      return [type, vec8([0x03, 0x04, 0x03, 0x03])];
    case 0x000a:
      return [type, u16List([0x001d, 0x0017])];
    case 0x000b:
      return [type, vec8([0])];
    case 0x0033:
      return [type, [0, 0]];
    default:
      return [type, []];
  }
}

t.test("JA4 of FoxIO's spec example, parsed from a built hello, with and without GREASE", async (t) => {
  const plain = parse(
    helloRecord({ ciphers: SPEC_CIPHERS, extensions: SPEC_EXTENSIONS.map((e) => extensionFor(e, SPEC_SIGS)) }),
  );
  t.equal(plain.ja4, 't13d1516h2_8daaf6152771_e5627efa2ab1');
  t.equal(
    ja4Raw(plain),
    't13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_' +
      '0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601',
  );
  const greased = parse(
    helloRecord({
      ciphers: [0x3a3a, ...SPEC_CIPHERS],
      extensions: [
        [0x9a9a, []],
        ...SPEC_EXTENSIONS.map((e) => extensionFor(e, [0x2a2a, ...SPEC_SIGS])),
        [0xdada, [0]],
      ],
    }),
  );
  t.equal(greased.ja4, plain.ja4, 'GREASE ciphers, extensions and signature algorithms are ignored');
  t.same(greased.cipherSuites.slice(0, 1), [0x3a3a], 'but kept in the hello itself');
});

t.test("FoxIO's sigalg-grease example (python/test/testdata/sigalg-grease.pcapng.json)", async (t) => {
  const extensions = [0xfe0d, 0x0010, 0x0017, 0x0033, 0x44cd, 0xff01, 0x000a, 0x000d, 0x0023, 0x002b, 0x000b, 0xca34, 0x002d, 0x0000, 0x0005, 0x001b, 0x0012];
  const sigs = [0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];
  const hello = parse(
    helloRecord({
      ciphers: [0x5a5a, ...SPEC_CIPHERS],
      extensions: [[0x0a0a, []], ...extensions.map((e) => extensionFor(e, [0xfafa, ...sigs])), [0x1a1a, []]],
    }),
  );
  t.equal(hello.ja4, 't13d1517h2_8daaf6152771_cb7bf5808d99');
  t.equal(hello.ech, true);
});

const BASE: FingerprintInput = {
  legacyVersion: 0x0303,
  cipherSuites: [0x1301],
  extensions: [0x000d],
  groups: [],
  ecPointFormats: [],
  signatureAlgorithms: [0x0403],
  supportedVersions: [],
  alpn: null,
};

const section = (input: Partial<FingerprintInput>, part: number): string => ja4({ ...BASE, ...input }).split('_')[part]!;

t.test('JA4 section a: ALPN first and last characters', async (t) => {
  const alpnChars = (...names: string[] | [null]): string =>
    section({ alpn: names[0] === null ? null : (names as string[]) }, 0).slice(-2);
  t.equal(alpnChars('h2', 'http/1.1'), 'h2');
  t.equal(alpnChars('http/1.1', 'h2'), 'h1');
  t.equal(alpnChars('h'), 'hh', 'a single character is first and last');
  t.equal(alpnChars(null), '00', 'no ALPN extension');
  t.equal(alpnChars(), '00', 'no ALPN values');
  t.equal(alpnChars(''), '00', 'empty first value');
  // Non-alphanumeric first or last byte: first and last hex digits of the whole value (spec examples).
  t.equal(alpnChars('\xab'), 'ab');
  t.equal(alpnChars('\xab\xcd'), 'ad');
  t.equal(alpnChars('0\xab'), '3b');
  t.equal(alpnChars('01\xab\xcd'), '3d');
  t.equal(alpnChars('0\xab\xcd1'), '01');
  t.equal(alpnChars('\x1a\x1a', 'h2'), 'h2', 'a GREASE ALPN value is skipped');
});

t.test('JA4 section a: version, SNI and counts', async (t) => {
  const version = (input: Partial<FingerprintInput>): string => section(input, 0).slice(1, 3);
  t.equal(version({ supportedVersions: [0x0a0a, 0x0304, 0x0303] }), '13', 'highest supported_versions, GREASE ignored');
  t.equal(version({ supportedVersions: [0x0303, 0x0304] }), '13', 'highest, not first');
  t.equal(version({ legacyVersion: 0x0301 }), '10', 'legacy_version without supported_versions');
  t.equal(version({ legacyVersion: 0x0300 }), 's3');
  t.equal(version({ supportedVersions: [0x7f1c, 0x0303] }), '00', 'a draft version is unknown');
  t.equal(version({ supportedVersions: [0x2a2a], legacyVersion: 0x0302 }), '11', 'only GREASE: legacy_version');
  t.equal(section({ extensions: [0x0000] }, 0)[3], 'd');
  t.equal(section({ extensions: [] }, 0)[3], 'i');
  const many = Array.from({ length: 150 }, (_, i) => i + 0x100);
  t.equal(section({ cipherSuites: many, extensions: many }, 0).slice(4, 8), '9999', 'counts stop at 99');
});

t.test('JA4 empty sections are 000000000000', async (t) => {
  t.equal(section({ cipherSuites: [] }, 1), '000000000000', 'no ciphers');
  t.equal(section({ cipherSuites: [0x0a0a] }, 1), '000000000000', 'only GREASE ciphers');
  t.equal(section({ extensions: [], signatureAlgorithms: [] }, 2), '000000000000', 'no extensions');
  t.equal(section({ extensions: [0x0000, 0x0010], signatureAlgorithms: [] }, 2), '000000000000', 'only SNI and ALPN');
  // "If there are no signature algorithms in the hello packet, then the string ends without an underscore."
  t.equal(section({ extensions: [0x0005, 0x000a], signatureAlgorithms: [] }, 2), sha12('0005,000a'));
  t.equal(
    ja4({ ...BASE, extensions: [0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015], signatureAlgorithms: [] }).split('_')[2],
    '6d807ffa2a79',
    'the spec example without signature algorithms',
  );
});

t.test('remembered fingerprints: equal hellos share them, any other hello gets its own', async (t) => {
  const fixtures = ['chrome-1250-kyber', 'chrome-34-google', 'hrr', 'mlkem-googlevideo', 'no-sni', 'openjdk-25', 'tls13-draft28'];
  for (const name of fixtures) {
    const [first] = hellosOf(name);
    const [again] = hellosOf(name);
    // Read the second hello's fingerprints first: the first must then come from the table.
    const shared = { ja3: again!.ja3, ja3Hash: again!.ja3Hash, ja4: again!.ja4 };
    t.same({ ja3: first!.ja3, ja3Hash: first!.ja3Hash, ja4: first!.ja4 }, shared, name);
    t.equal(first!.ja3, ja3String(first!), `${name}: JA3 as computed directly`);
    t.equal(first!.ja3Hash, ja3Hash(ja3String(first!)), `${name}: JA3 hash as computed directly`);
    t.equal(first!.ja4, ja4(first!), `${name}: JA4 as computed directly`);
  }
  // Inputs that a careless key would run together: a value moved across a list boundary, an
  // empty ALPN list against none, one ALPN name against two, another transport or version.
  const variants: Array<[string, Partial<FingerprintInput>, 't' | 'q']> = [
    ['base', {}, 't'],
    ['QUIC', {}, 'q'],
    ['legacy version', { legacyVersion: 0x0301 }, 't'],
    ['a cipher moved into the extensions', { cipherSuites: [], extensions: [0x1301, 0x000d] }, 't'],
    ['an extension moved into the groups', { extensions: [], groups: [0x000d] }, 't'],
    ['point formats', { ecPointFormats: [0] }, 't'],
    ['signature algorithms', { signatureAlgorithms: [] }, 't'],
    ['supported versions', { supportedVersions: [0x0304] }, 't'],
    ['empty ALPN list', { alpn: [] }, 't'],
    ['ALPN ab', { alpn: ['ab'] }, 't'],
    ['ALPN a, b', { alpn: ['a', 'b'] }, 't'],
    ['ALPN empty name', { alpn: [''] }, 't'],
  ];
  const seen = new Set<object>();
  for (const [what, change, transport] of variants) {
    const input = { ...BASE, ...change };
    const prints = fingerprintsOf(input, transport);
    t.notOk(seen.has(prints), `${what}: an entry of its own`);
    seen.add(prints);
    t.equal(fingerprintsOf({ ...input }, transport), prints, `${what}: the same entry for equal fields`);
  }
  const long = { ...BASE, cipherSuites: Array.from({ length: 600 }, (_, i) => i) };
  t.not(fingerprintsOf(long, 't'), fingerprintsOf(long, 't'), 'a hello with very long lists is not remembered');
});

t.test('remembered fingerprints: the table forgets the oldest past its size', async (t) => {
  const input = (n: number): FingerprintInput => ({ ...BASE, cipherSuites: [0xf000 + (n >> 8), n & 0xff] });
  const first = fingerprintsOf(input(0), 't');
  t.equal(fingerprintsOf(input(0), 't'), first);
  for (let n = 1; n <= MAX_REMEMBERED_FINGERPRINTS + 1; n++) fingerprintsOf(input(n), 't');
  t.not(fingerprintsOf(input(0), 't'), first, 'the first input was forgotten');
});
