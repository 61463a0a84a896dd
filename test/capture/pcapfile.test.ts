import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ipFromFrame, ipOffset, LINKTYPE } from '../../src/capture/linktype.js';
import {
  CaptureError,
  readCapture,
  readCaptureBatches,
  type CaptureRecord,
  type ReadCaptureOptions,
} from '../../src/capture/pcapfile.js';
import { buildTcpPacket } from '../../src/packet/build.js';
import { decodeIp } from '../../src/packet/decode.js';
import { ACK } from '../../src/packet/types.js';

const PCAPS = '/work/shared/pcaps/';
/** test/fixtures/pcap/, found from this file whether it runs from test/ or dist/test/. */
function fixturesDir(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'test', 'fixtures', 'pcap');
    if (existsSync(candidate)) return candidate + '/';
  }
  throw new Error('test/fixtures/pcap not found');
}
const FIXTURES = fixturesDir();
const tmp = mkdtempSync(join(tmpdir(), 'flowgate-pcapfile-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

async function readAll(path: string, opts?: ReadCaptureOptions): Promise<{ records: CaptureRecord[]; error?: CaptureError }> {
  const records: CaptureRecord[] = [];
  // With reuseChunks a batch's bytes are overwritten once the next is read: keep copies.
  const keep = (r: CaptureRecord) => (opts?.reuseChunks ? { ...r, data: Buffer.from(r.data) } : r);
  try {
    for await (const batch of readCaptureBatches(path, opts)) for (const r of batch) records.push(keep(r));
  } catch (e) {
    if (!(e instanceof CaptureError)) throw e;
    return { records, error: e };
  }
  return { records };
}

function write(name: string, data: Uint8Array | Buffer[]): string {
  const path = join(tmp, name);
  writeFileSync(path, Array.isArray(data) ? Buffer.concat(data) : data);
  return path;
}

/** Frame counts from `tshark -r FILE -T fields -e frame.number | wc -l` (tshark 4.0.17) and capinfos link types. */
const TSHARK_FRAMES: Record<string, [number, number]> = {
  'gopacket__test_loopback.pcap': [24, LINKTYPE.NULL],
  'suricata-verify__bug-5881-01__input.pcap': [42, LINKTYPE.RAW],
  'suricata-verify__community-id-ipv6__input.pcap': [70, 1],
  'suricata-verify__filestore-v2.1-forced__suricata-update-pdf.pcap': [175, 1],
  'suricata-verify__http-post-file__input.pcap': [28, LINKTYPE.NULL],
  'suricata-verify__http-range-file__input.pcap': [316, 1],
  'suricata-verify__sip-tcp-method__sip-tcp.pcap': [11, 1],
  'suricata-verify__tcp-fastopen-10-syn-data-ignore__input.pcap': [52, LINKTYPE.RAW],
  'suricata-verify__tls__tls-client-hello-frag-01__dump_mtu300.pcap': [62, 1],
  'suricata-verify__tls__tls-fin-close-data-01__debug-s13.pcap': [24, 1],
  'suricata-verify__tls__tls-fingerprint-alert__input.pcap': [28, 1],
  'suricata-verify__tls__tls13-draft28__tls13_draft28.pcap': [30, 1],
  'tcpdump__print-flags.pcap': [10, 1],
  'tcpdump__quic_handshake.pcap': [18, LINKTYPE.NULL],
  'tcpdump__ssh.pcap': [54, 1],
  'zeek__ftp__ipv6-retr-samba.pcap': [37, 1],
  'zeek__http__206_example_a.pcap': [672, 1],
  'zeek__http__bro.org.pcap': [751, 1],
  'zeek__http__docker-http-upgrade.pcap': [200, 1],
  'zeek__http__m57-long-49583-80.pcap': [227, 1],
  'zeek__http__pipelined-requests.pcap': [49, 1],
  'zeek__mysql__plain-amazon-rds.pcap': [19, 1],
  'zeek__pop3__pop3.pcap': [125, 1],
  'zeek__postgresql__psql-aws-ssl-require.pcap': [30, 1],
  'zeek__quic__chromium-115.0.5790.110-api-cirrus-com.pcap': [19, 1],
  'zeek__quic__chromium-115.0.5790.110-google-de-fragmented.pcap': [917, 1],
  'zeek__quic__quic-multiple-initial-fragmented-crypto.pcap': [15, 1],
  'zeek__quic__quicv2-http3-443.pcap': [14, 1],
  'zeek__ssh__ssh_kex_mlkem.pcap': [3763, 1],
  'zeek__tls__certificate-request-failed.pcap': [12, 1],
  'zeek__tls__chrome-1250-tls-x25519-kyber.pcap': [15, 1],
  'zeek__tls__chrome-34-google.pcap': [42, 1],
  'zeek__tls__hrr.pcap': [19, 1],
  'zeek__tls__openjdk-25.0.2-zeek.org.pcap': [6, LINKTYPE.LINUX_SLL2],
  'zeek__tls__tls-early-alert.pcap': [17, 1],
  'zeek__tls__tls13-ech.pcap': [69, 1],
  'zeek__tls__tls13_wolfssl.pcap': [21, 1],
  'zeek__wikipedia.pcap': [136, 1],
  'zeek__workshop_2011_browse.pcap': [121, 1],
};

t.test('every shared capture: frame count and link type as tshark sees them', async (t) => {
  const names = readdirSync(PCAPS).filter((f) => f.endsWith('.pcap') || f.endsWith('.pcapng'));
  t.same(names.sort(), Object.keys(TSHARK_FRAMES).sort(), 'the table covers every shared capture');
  for (const [name, [frames, linktype]] of Object.entries(TSHARK_FRAMES)) {
    const { records, error } = await readAll(PCAPS + name);
    t.equal(error, undefined, `${name}: no error`);
    t.equal(records.length, frames, `${name}: ${frames} frames`);
    t.ok(records.every((r, i) => r.index === i + 1 && r.linktype === linktype), `${name}: indexes and link type`);
  }
});

type PcapParserPacket = { header: { timestampSeconds: number; timestampMicroseconds: number; originalLength: number }; data: Buffer };
const pcapParser = createRequire(import.meta.url)('pcap-parser') as {
  parse(path: string): { on(ev: 'packet', f: (p: PcapParserPacket) => void): void; on(ev: 'end' | 'error', f: (e?: Error) => void): void };
};

function parseWithPcapParser(path: string): Promise<PcapParserPacket[]> {
  return new Promise((resolve, reject) => {
    const out: PcapParserPacket[] = [];
    const p = pcapParser.parse(path);
    p.on('packet', (pkt) => out.push(pkt));
    p.on('error', reject);
    p.on('end', () => resolve(out));
  });
}

t.test('same records as the pcap-parser package', async (t) => {
  for (const name of Object.keys(TSHARK_FRAMES)) {
    const ours = (await readAll(PCAPS + name)).records;
    const theirs = await parseWithPcapParser(PCAPS + name);
    const same =
      ours.length === theirs.length &&
      ours.every((r, i) => {
        const h = theirs[i].header;
        return (
          r.tsMicros === h.timestampSeconds * 1e6 + h.timestampMicroseconds &&
          r.origLen === h.originalLength &&
          Buffer.compare(r.data, theirs[i].data) === 0
        );
      });
    t.ok(same, name);
  }
});

t.test('record-by-record iteration, small chunks and progress', async (t) => {
  const path = PCAPS + 'zeek__tls__chrome-34-google.pcap';
  const whole = (await readAll(path)).records;
  const one: CaptureRecord[] = [];
  for await (const r of readCapture(path)) one.push(r);
  t.same(one.map((r) => r.index), whole.map((r) => r.index));
  const size = readFileSync(path).length;
  const biggest = Math.max(...whole.map((r) => r.data.length));
  for (const chunkBytes of [64, 100, 1000, 4096]) {
    // reuseChunks (replay's mode) reads into the buffers of two chunks ago: the carry-over and
    // the record larger than a chunk (`biggest` > 64 and 100) must come out the same.
    for (const reuseChunks of [false, true]) {
      const progress: number[] = [];
      const got = (await readAll(path, { chunkBytes, reuseChunks, onProgress: (n, total) => { progress.push(n); t.equal(total, size); } })).records;
      const same = got.length === whole.length && got.every((r, i) => r.tsMicros === whole[i].tsMicros && Buffer.compare(r.data, whole[i].data) === 0);
      t.ok(same, `chunkBytes ${chunkBytes}${reuseChunks ? ', buffers reused' : ''}: same records (largest ${biggest} bytes)`);
      t.ok(progress.every((n, i) => i === 0 || n >= progress[i - 1]), 'progress grows');
      t.equal(progress[progress.length - 1], size, 'progress ends at the file size');
    }
  }
  // Records are views into read buffers, and stay valid after later reads.
  t.ok(whole[0].data.byteOffset > 0 && whole[0].data.buffer.byteLength > whole[0].data.length, 'data is a view');
});

t.test('pcapng, nanosecond pcap and nanosecond pcapng fixtures (editcap) match the original', async (t) => {
  const original = (await readAll(PCAPS + 'zeek__tls__openjdk-25.0.2-zeek.org.pcap')).records;
  for (const name of ['tls-openjdk-sll2.pcapng', 'tls-openjdk-sll2.nsec.pcap', 'tls-openjdk-sll2.nsec.pcapng']) {
    const { records, error } = await readAll(FIXTURES + name);
    t.equal(error, undefined);
    t.equal(records.length, 6, `${name}: 6 frames`);
    t.same(
      records.map((r) => [r.index, r.tsMicros, r.linktype, r.origLen, Buffer.from(r.data).toString('hex')]),
      original.map((r) => [r.index, r.tsMicros, r.linktype, r.origLen, Buffer.from(r.data).toString('hex')]),
      name,
    );
  }
  // tshark: frame 1 at 1776243128.835142
  t.equal(original[0].tsMicros, 1776243128835142);
});

// --- hand-built captures ---------------------------------------------------------------

const frame = buildTcpPacket({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, seq: 3, flags: ACK, payload: 'abc' });

function u32(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v >>> 0);
  else b.writeUInt32BE(v >>> 0);
  return b;
}
function u16(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  return b;
}
const pad4 = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);

/** A pcap file: global header, then records [sec, frac, data, origLen?]. */
function pcap(le: boolean, magic: number, linktype: number, records: [number, number, Uint8Array, number?][]): Buffer[] {
  const out = [u32(magic, le), u16(2, le), u16(4, le), u32(0, le), u32(0, le), u32(65535, le), u32(linktype, le)];
  for (const [sec, frac, data, orig] of records) {
    out.push(u32(sec, le), u32(frac, le), u32(data.length, le), u32(orig ?? data.length, le), Buffer.from(data));
  }
  return out;
}

/** One pcapng block. */
function block(type: number, body: Buffer, le: boolean): Buffer {
  const b = pad4(body);
  return Buffer.concat([u32(type, le), u32(b.length + 12, le), b, u32(b.length + 12, le)]);
}
function shb(le: boolean): Buffer {
  return block(0x0a0d0d0a, Buffer.concat([u32(0x1a2b3c4d, le), u16(1, le), u16(0, le), Buffer.alloc(8, 0xff)]), le);
}
function opt(code: number, value: Buffer, le: boolean): Buffer {
  return Buffer.concat([u16(code, le), u16(value.length, le), pad4(value)]);
}
function idb(le: boolean, linktype: number, opts: Buffer[] = []): Buffer {
  const end = opts.length ? [u32(0, le)] : [];
  return block(1, Buffer.concat([u16(linktype, le), u16(0, le), u32(0, le), ...opts, ...end]), le);
}
function epb(le: boolean, ifid: number, ts: bigint, data: Uint8Array, origLen = data.length): Buffer {
  const hi = Number(ts >> 32n);
  const lo = Number(ts & 0xffffffffn);
  return block(6, Buffer.concat([u32(ifid, le), u32(hi, le), u32(lo, le), u32(data.length, le), u32(origLen, le), Buffer.from(data)]), le);
}

t.test('pcap in both byte orders, micro- and nanosecond magic', async (t) => {
  for (const le of [true, false]) {
    const us = write(`us-${le}.pcap`, pcap(le, 0xa1b2c3d4, 101, [[1700000000, 123456, frame], [1700000001, 999999, frame, 1500]]));
    const ns = write(`ns-${le}.pcap`, pcap(le, 0xa1b23c4d, 228, [[1700000000, 123456789, frame]]));
    const a = (await readAll(us)).records;
    t.same(a.map((r) => [r.tsMicros, r.linktype, r.origLen, r.data.length]), [
      [1700000000123456, 101, frame.length, frame.length],
      [1700000001999999, 101, 1500, frame.length],
    ]);
    const b = (await readAll(ns)).records;
    t.same(b.map((r) => [r.tsMicros, r.linktype]), [[1700000000123456, 228]], 'nanoseconds truncated to microseconds');
    t.equal(decodeIp(ipFromFrame(b[0].linktype, b[0].data)!).kind, 'tcp');
  }
});

t.test('pcapng: byte orders, sections, interfaces, resolutions, SPB/OPB, unknown blocks', async (t) => {
  const ts = 1700000000123456n;
  for (const le of [true, false]) {
    const eth = Buffer.concat([Buffer.alloc(12), Buffer.of(0x08, 0x00), frame]);
    const parts = [
      shb(le),
      idb(le, 1), // interface 0: Ethernet, microseconds
      idb(le, 101, [opt(9, Buffer.of(9), le)]), // interface 1: raw IP, nanoseconds
      idb(le, 229, [opt(9, Buffer.of(0x80 | 10), le), opt(14, Buffer.concat(le ? [u32(10, le), u32(0, le)] : [u32(0, le), u32(10, le)]), le)]), // 2^-10 s, +10 s
      block(4, Buffer.alloc(8), le), // name resolution block: skipped
      epb(le, 0, ts, eth),
      block(0x40000bad, Buffer.from('custom'), le), // unknown: skipped
      epb(le, 1, ts * 1000n + 999n, frame),
      epb(le, 2, 1024n * 5n + 512n, Uint8Array.of(0x60)),
      block(3, Buffer.concat([u32(frame.length + 14, le), eth]), le), // SPB: no timestamp, interface 0
      block(2, Buffer.concat([u16(1, le), u16(0, le), u32(Number(ts * 1000n >> 32n), le), u32(Number((ts * 1000n) & 0xffffffffn), le), u32(frame.length, le), u32(frame.length, le), Buffer.from(frame)]), le), // OPB
      block(5, Buffer.alloc(12), le), // interface statistics: skipped
      // A second section in the other byte order resets the interfaces.
      shb(!le),
      idb(!le, 113),
      epb(!le, 0, 42n, Buffer.alloc(16)),
    ];
    const { records, error } = await readAll(write(`mixed-${le}.pcapng`, parts));
    t.equal(error, undefined);
    t.same(
      records.map((r) => [r.index, r.tsMicros, r.linktype, r.data.length, r.origLen]),
      [
        [1, 1700000000123456, 1, eth.length, eth.length],
        [2, 1700000000123456, 101, frame.length, frame.length], // 999 ns dropped
        [3, 15500000, 229, 1, 1], // (5 + 0.5) s + 10 s offset
        [4, 15500000, 1, eth.length, eth.length + 0], // SPB keeps the previous time
        [5, 1700000000123456, 101, frame.length, frame.length],
        [6, 42, 113, 16, 16],
      ],
      `little-endian first: ${le}`,
    );
    t.equal(decodeIp(ipFromFrame(records[0].linktype, records[0].data)!).kind, 'tcp');
  }
});

t.test('large nanosecond timestamps keep microsecond precision', async (t) => {
  const cases = [0n, 999n, 1000n, 4294967295999n, 1776243128835142999n, 1776243128835142001n];
  const parts = [shb(true), idb(true, 101, [opt(9, Buffer.of(9), true)]), ...cases.map((ts) => epb(true, 0, ts, frame))];
  const { records } = await readAll(write('ns.pcapng', parts));
  t.same(records.map((r) => r.tsMicros), cases.map((ns) => Number(ns / 1000n)));
});

// --- truncated and corrupt files ---------------------------------------------------------

/** End offsets of the records of a little-endian pcap, read independently of the reader. */
function pcapRecordEnds(b: Buffer): number[] {
  const ends: number[] = [];
  for (let p = 24; p + 16 <= b.length; ) {
    p += 16 + b.readUInt32LE(p + 8);
    if (p <= b.length) ends.push(p);
  }
  return ends;
}

/** End offsets of the packet blocks of a little-endian pcapng. */
function pcapngPacketEnds(b: Buffer): number[] {
  const ends: number[] = [];
  for (let p = 0; p + 8 <= b.length; ) {
    const type = b.readUInt32LE(p);
    p += b.readUInt32LE(p + 4);
    if (type === 6 || type === 3 || type === 2) ends.push(p);
  }
  return ends;
}

t.test('truncated files yield every whole record, then ERR_CAPTURE_TRUNCATED', async (t) => {
  const sources: [string, (b: Buffer) => number[]][] = [
    [PCAPS + 'tcpdump__print-flags.pcap', pcapRecordEnds],
    [FIXTURES + 'tls-openjdk-sll2.pcapng', pcapngPacketEnds],
  ];
  for (const [path, endsOf] of sources) {
    const full = readFileSync(path);
    const ends = endsOf(full);
    const cuts = new Set<number>([1, 3, 4, 23, 24, 25, 39, 40, full.length - 1]);
    for (const e of ends.slice(0, -1)) [e - 1, e + 1, e + 15, e + 16, e + 17].forEach((c) => cuts.add(c));
    const boundaries = new Set([24, 108, 128, ...ends]); // pcap header; pcapng SHB and IDB ends
    for (const cut of [...cuts].filter((c) => c > 0 && c < full.length && !boundaries.has(c))) {
      const want = ends.filter((e) => e <= cut).length;
      const file = write('cut.bin', full.subarray(0, cut));
      const { records, error } = await readAll(file, { chunkBytes: 256 });
      const ok =
        records.length === want &&
        error?.code === 'ERR_CAPTURE_TRUNCATED' &&
        error.framesRead === want &&
        error.message.includes(`${want} frames read`) &&
        (records.length === 0 || records[records.length - 1].index === want);
      t.ok(ok, `${path.split('/').pop()} cut at ${cut}: ${want} frames then truncated (${error?.message ?? 'no error'})`);
    }
  }
  const header = await readAll(write('header.pcap', readFileSync(PCAPS + 'tcpdump__print-flags.pcap').subarray(0, 24)));
  t.same([header.records.length, header.error], [0, undefined], 'a pcap with no records is not truncated');
  const short = await readAll(write('short.pcap', readFileSync(PCAPS + 'tcpdump__print-flags.pcap').subarray(0, 10)));
  t.match(short.error?.message, /inside the file header at byte 0; 0 frames read/);
  const empty = await readAll(write('empty.pcap', new Uint8Array(0)));
  t.equal(empty.error?.code, 'ERR_CAPTURE_TRUNCATED');
  t.match(empty.error?.message, /empty file.*0 frames read/);
});

t.test('corrupt files yield every good record, then ERR_CAPTURE_CORRUPT', async (t) => {
  const expectCorrupt = async (name: string, data: Buffer | Buffer[], frames: number, why: RegExp, opts?: ReadCaptureOptions) => {
    const { records, error } = await readAll(write(name, data), opts);
    t.equal(records.length, frames, `${name}: ${frames} good records first`);
    t.equal(error?.code, 'ERR_CAPTURE_CORRUPT', name);
    t.match(error?.message, why, name);
    t.match(error?.message, new RegExp(`${frames} frames read`), name);
  };
  await expectCorrupt('text.pcap', Buffer.from('GET / HTTP/1.1\r\n\r\nhello there, not a capture'), 0, /unknown magic/);

  const ok: [number, number, Uint8Array][] = [[1, 0, frame], [2, 0, frame], [3, 0, frame]];
  const big = Buffer.concat(pcap(true, 0xa1b2c3d4, 101, ok));
  big.writeUInt32LE(0x7fffffff, 24 + 2 * (16 + frame.length) + 8); // third record's captured length
  await expectCorrupt('caplen.pcap', big, 2, /captured length 2147483647 too large/);
  await expectCorrupt('limit.pcap', pcap(true, 0xa1b2c3d4, 101, ok), 0, /too large/, { maxRecordBytes: frame.length - 1 });

  const good = [shb(true), idb(true, 101), epb(true, 0, 1n, frame)];
  const badTrailer = epb(true, 0, 2n, frame);
  badTrailer.writeUInt32LE(12, badTrailer.length - 4);
  await expectCorrupt('trailer.pcapng', [...good, badTrailer, epb(true, 0, 3n, frame)], 1, /lengths differ/);
  const odd = epb(true, 0, 2n, frame);
  odd.writeUInt32LE(odd.length - 2, 4);
  await expectCorrupt('odd.pcapng', [...good, odd], 1, /bad pcapng block length/);
  await expectCorrupt('ifid.pcapng', [...good, epb(true, 5, 2n, frame)], 1, /unknown interface 5/);
  const overrun = epb(true, 0, 2n, frame);
  overrun.writeUInt32LE(frame.length + 100, 8 + 12);
  await expectCorrupt('overrun.pcapng', [...good, overrun], 1, /overruns/);
  const bom = shb(true);
  bom.writeUInt32LE(0x12345678, 8);
  await expectCorrupt('bom.pcapng', [...good, bom], 1, /byte-order magic/);
  const v3 = Buffer.concat(pcap(true, 0xa1b2c3d4, 101, ok));
  v3.writeUInt16LE(3, 4);
  await expectCorrupt('version.pcap', v3, 0, /unsupported pcap version 3/);
  const ng2 = shb(true);
  ng2.writeUInt16LE(2, 12);
  await expectCorrupt('version.pcapng', [...good, ng2], 1, /unsupported pcapng version/);
  await expectCorrupt('spb.pcapng', [shb(true), block(3, Buffer.alloc(8), true)], 0, /without an interface/);
});

t.test('fuzz: mutated files give records and at most a CaptureError', async (t) => {
  let seed = 7;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  const sources = [readFileSync(FIXTURES + 'tls-openjdk-sll2.nsec.pcapng'), readFileSync(PCAPS + 'tcpdump__print-flags.pcap')];
  const seen: Record<string, number> = {};
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(sources[i % 2]);
    const flips = 1 + Math.floor(rnd() * 3);
    for (let f = 0; f < flips; f++) {
      // Mostly the headers and length fields near the start of the file.
      const at = Math.floor(rnd() * (rnd() < 0.7 ? 400 : b.length));
      b[at] = Math.floor(rnd() * 256);
    }
    const cut = rnd() < 0.2 ? Math.floor(rnd() * b.length) : b.length;
    let outcome: string;
    try {
      const r = await readAll(write('fuzz.bin', b.subarray(0, cut)), { chunkBytes: 512 });
      outcome = r.error?.code ?? 'ok';
      if (r.records.some((x, j) => x.index !== j + 1 || x.data.length > b.length)) outcome = 'bad records';
    } catch (e) {
      outcome = `threw ${String(e)}`;
    }
    seen[outcome] = (seen[outcome] ?? 0) + 1;
  }
  t.same(Object.keys(seen).sort(), ['ERR_CAPTURE_CORRUPT', 'ERR_CAPTURE_TRUNCATED', 'ok'], JSON.stringify(seen));
});

t.test('stopping early closes the file', async (t) => {
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 20; i++) {
    for await (const r of readCapture(PCAPS + 'zeek__http__bro.org.pcap', { chunkBytes: 4096 })) {
      if (r.index === 3) break;
    }
  }
  t.equal(fds(), before, 'no file descriptors left open');
});

// --- link layers -------------------------------------------------------------------------

t.test('ipFromFrame: Ethernet, VLAN, SLL, SLL2, raw, loopback', async (t) => {
  const v6 = buildTcpPacket({ src: 'fd00::1', dst: 'fd00::2', sport: 1, dport: 2, seq: 3, flags: ACK });
  const cat = (...parts: (number[] | Uint8Array)[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));
  const mac = new Array<number>(12).fill(0xaa);
  const junk = Buffer.alloc(7, 0x81); // looks like a VLAN ethertype byte, so reading past `end` shows
  const check = (name: string, linktype: number, data: Uint8Array, want: Uint8Array | null) => {
    const got = ipFromFrame(linktype, data);
    if (want === null) t.equal(got, null, name);
    else t.ok(got !== null && Buffer.compare(got, want) === 0 && got.buffer === data.buffer, name);
    // Replay asks for the offset of a frame inside its read chunk, with bytes on both sides.
    const inChunk = ipOffset(linktype, cat(junk, data, junk), junk.length, junk.length + data.length);
    t.equal(inChunk, want === null ? -1 : junk.length + data.length - want.length, `${name}, inside a chunk`);
  };
  check('Ethernet IPv4', 1, cat(mac, [0x08, 0x00], frame), frame);
  check('Ethernet IPv6', 1, cat(mac, [0x86, 0xdd], v6), v6);
  check('Ethernet + padding keeps the padding for the IP decoder', 1, cat(mac, [0x08, 0x00], frame, [0, 0]), cat(frame, [0, 0]));
  check('802.1Q', 1, cat(mac, [0x81, 0x00, 0x00, 0x05, 0x08, 0x00], frame), frame);
  check('802.1ad + 802.1Q', 1, cat(mac, [0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x86, 0xdd], v6), v6);
  check('too many tags', 1, cat(mac, ...new Array(5).fill([0x81, 0x00, 0, 1]), [0x08, 0x00], frame), null);
  check('tag cut short', 1, cat(mac, [0x81, 0x00, 0x00]), null);
  check('ARP', 1, cat(mac, [0x08, 0x06], new Array(28).fill(0)), null);
  check('802.3 length field', 1, cat(mac, [0x00, 0x40], frame), null);
  check('runt Ethernet', 1, cat(mac, [0x08]), null);
  const sllHead = [0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
  check('SLL IPv4', 113, cat(sllHead, [0x08, 0x00], frame), frame);
  check('SLL VLAN', 113, cat(sllHead, [0x81, 0x00, 0, 7, 0x86, 0xdd], v6), v6);
  check('SLL other', 113, cat(sllHead, [0x08, 0x06], [1, 2]), null);
  const sll2Tail = [0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
  check('SLL2 IPv6', 276, cat([0x86, 0xdd], sll2Tail, v6), v6);
  check('SLL2 VLAN', 276, cat([0x81, 0x00], sll2Tail, [0, 9, 0x08, 0x00], frame), frame);
  check('SLL2 short', 276, cat([0x08, 0x00], [0, 0]), null);
  check('raw 101 v4', 101, frame, frame);
  check('raw 101 v6', 101, v6, v6);
  check('raw 12', 12, frame, frame);
  check('raw garbage', 101, Uint8Array.of(0x10, 0, 0), null);
  check('raw empty', 101, new Uint8Array(0), null);
  check('IPV4 228', 228, frame, frame);
  check('IPV4 228 with v6 inside', 228, v6, null);
  check('IPV6 229', 229, v6, v6);
  check('null, little-endian AF_INET', 0, cat([2, 0, 0, 0], frame), frame);
  check('null, big-endian AF_INET', 0, cat([0, 0, 0, 2], frame), frame);
  for (const af of [24, 28, 30, 10]) {
    check(`null, little-endian AF_INET6=${af}`, 0, cat([af, 0, 0, 0], v6), v6);
    check(`null, big-endian AF_INET6=${af}`, 0, cat([0, 0, 0, af], v6), v6);
  }
  check('null, unknown family', 0, cat([7, 0, 0, 0], frame), null);
  check('loop (big-endian) AF_INET', 108, cat([0, 0, 0, 2], frame), frame);
  check('loop AF_INET6', 108, cat([0, 0, 0, 24], v6), v6);
  check('loop short', 108, Uint8Array.of(0, 0), null);
  check('unknown link type', 147, frame, null);
});
