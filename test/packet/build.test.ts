import t from 'tap';
import {
  buildIpv4Fragments,
  buildIpv6Fragments,
  buildTcpPacket,
  encodeTcpOptions,
  type TcpPacketSpec,
} from '../../src/packet/build.js';
import { ipv4HeaderChecksumOk, tcpChecksumOk } from '../../src/packet/checksum.js';
import { decodeIp } from '../../src/packet/decode.js';
import { ACK, RST, SYN } from '../../src/packet/types.js';
import { FlowgateError } from '../../src/errors.js';

const base: TcpPacketSpec = { src: '192.0.2.1', dst: '198.51.100.7', sport: 40000, dport: 80, seq: 1, flags: ACK };

t.test('defaults and header fields', async (t) => {
  const p = buildTcpPacket({ ...base, payload: 'GET / HTTP/1.1\r\n\r\n', ipId: 0x1234 });
  t.equal(p[0], 0x45);
  t.equal((p[2] << 8) | p[3], p.length, 'total length');
  t.equal((p[4] << 8) | p[5], 0x1234, 'IP id');
  t.equal(p[6], 0x40, 'DF set by default');
  t.equal(p[8], 64, 'TTL 64');
  t.equal(p[9], 6);
  t.ok(ipv4HeaderChecksumOk(p));
  t.equal((p[34] << 8) | p[35], 65535, 'window 65535');
  t.equal(p[32] >> 4, 5, 'no options');
  t.equal(buildTcpPacket({ ...base, dontFragment: false })[6], 0);

  const six = buildTcpPacket({ ...base, src: '2001:db8::1', dst: '2001:db8::2', ttl: 5 });
  t.equal(six[0] >> 4, 6, 'family inferred from the address');
  t.equal((six[4] << 8) | six[5], six.length - 40, 'payload length');
  t.equal(six[6], 6);
  t.equal(six[7], 5, 'hop limit');
  const r = decodeIp(buildTcpPacket({ ...base, payload: Uint8Array.of(0, 1, 2) }));
  t.same(r.kind === 'tcp' && [...r.packet.payload], [0, 1, 2], 'binary payload');
});

t.test('a RST toward the server, as the daemon crafts it', async (t) => {
  const rst = buildTcpPacket({ src: '10.0.1.2', dst: '10.0.2.2', sport: 5555, dport: 443, seq: 0x12345678, ack: 0x9abcdef0, flags: RST | ACK, window: 0 });
  const r = decodeIp(rst);
  if (r.kind !== 'tcp') throw new Error('not tcp');
  t.equal(r.packet.flags, RST | ACK);
  t.equal(r.packet.seq, 0x12345678);
  t.equal(r.packet.ack, 0x9abcdef0);
  t.equal(r.packet.window, 0);
  t.equal(r.packet.payload.length, 0);
  t.ok(tcpChecksumOk(r.packet));
});

t.test('option encoding', async (t) => {
  t.same([...encodeTcpOptions({ mss: 1460 })], [2, 4, 5, 0xb4]);
  t.same(
    [...encodeTcpOptions({ mss: 1460, sackPermitted: true, tsVal: 1, tsEcr: 2, wscale: 7 })],
    [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7],
    'the Linux SYN layout',
  );
  t.same([...encodeTcpOptions({ sackPermitted: true })], [1, 1, 4, 2]);
  t.same([...encodeTcpOptions({ fastOpenCookie: new Uint8Array(0) })], [34, 2, 0, 0], 'cookie request, padded');
  t.equal(encodeTcpOptions({ md5: true }).length, 20);
  t.same([...encodeTcpOptions({ raw: Uint8Array.of(1) })], [1, 0, 0, 0]);
  t.throws(() => encodeTcpOptions({ md5: true, tsVal: 1, mss: 1, wscale: 1, fastOpenCookie: new Uint8Array(0) }), { code: 'ERR_PACKET_SPEC' }, 'over 40 bytes');
});

t.test('bad specs throw FlowgateError', async (t) => {
  const bad: TcpPacketSpec[] = [
    { ...base, src: 'not-an-ip' },
    { ...base, dst: '2001:db8::1' },
    { ...base, family: 6 },
    { ...base, hopByHop: 1 },
    { ...base, src: '::1', dst: '::2', extHeaders: [17] },
    { ...base, payload: new Uint8Array(70000) },
  ];
  for (const spec of bad) {
    t.throws(() => buildTcpPacket(spec), FlowgateError, JSON.stringify({ ...spec, payload: undefined }));
  }
  t.throws(() => buildIpv4Fragments(new Uint8Array(40), 8), { code: 'ERR_PACKET_SPEC' });
  t.throws(() => buildIpv4Fragments(buildTcpPacket(base), 7), { code: 'ERR_PACKET_SPEC' });
  t.throws(() => buildIpv6Fragments(buildTcpPacket(base), 64), { code: 'ERR_PACKET_SPEC' });
});

/** Reassembles IPv4 fragments (in any order) into the original packet. */
function reassemble4(frags: Uint8Array[]): Uint8Array {
  const ihl = (frags[0][0] & 0xf) * 4;
  const pieces = frags.map((f) => ({ off: (((f[6] & 0x1f) << 8) | f[7]) * 8, data: f.subarray(ihl) }));
  const end = Math.max(...pieces.map((p) => p.off + p.data.length));
  const out = new Uint8Array(ihl + end);
  out.set(frags[0].subarray(0, ihl));
  for (const p of pieces) out.set(p.data, ihl + p.off);
  out[2] = out.length >> 8;
  out[3] = out.length & 0xff;
  out[6] = 0; // no MF, offset 0
  out[7] = 0;
  return out;
}

t.test('IPv4 fragments reassemble to the original segment', async (t) => {
  const whole = buildTcpPacket({ ...base, payload: 'x'.repeat(1000), options: { tsVal: 77 } });
  for (const size of [8, 13, 24, 100, 576, 2000]) {
    const frags = buildIpv4Fragments(whole, size);
    const step = Math.floor(size / 8) * 8;
    t.equal(frags.length, Math.ceil((whole.length - 20) / step), `size ${size}: count`);
    t.ok(frags.every(ipv4HeaderChecksumOk), 'header checksums');
    t.ok(frags.slice(0, -1).every((f) => (f[6] & 0x20) !== 0), 'MF on all but the last');
    t.equal(frags[frags.length - 1][6] & 0x20, 0);
    t.ok(frags.every((f) => (f[6] & 0x40) === 0), 'DF cleared');
    const back = reassemble4([...frags].reverse());
    const r = decodeIp(back);
    t.ok(r.kind === 'tcp' && tcpChecksumOk(r.packet), `size ${size}: reassembled segment checks out`);
    t.same(back.subarray(20), whole.subarray(20));
  }
});

t.test('IPv6 fragments keep the unfragmentable part', async (t) => {
  const whole = buildTcpPacket({ ...base, src: 'fd00::1', dst: 'fd00::2', hopByHop: 1, extHeaders: [43], destOpts: true, payload: 'y'.repeat(300) });
  const frags = buildIpv6Fragments(whole, 100, 0xabcdef01);
  const unfrag = 40 + 8 + 8; // IPv6 + hop-by-hop + routing
  const fragmentable = whole.length - unfrag;
  t.equal(frags.length, Math.ceil(fragmentable / 96));
  const data: Uint8Array[] = [];
  frags.forEach((f, i) => {
    t.equal((f[4] << 8) | f[5], f.length - 40, 'payload length');
    t.equal(f[48], 44, 'routing header now points at the fragment header');
    t.equal(f[unfrag], 60, 'fragment header points at what followed routing');
    const fo = (f[unfrag + 2] << 8) | f[unfrag + 3];
    t.equal(fo >> 3, (i * 96) / 8, 'offset');
    t.equal(fo & 1, i < frags.length - 1 ? 1 : 0, 'M flag');
    t.equal(Buffer.from(f.subarray(unfrag + 4, unfrag + 8)).readUInt32BE(0), 0xabcdef01, 'identification');
    data.push(f.subarray(unfrag + 8));
  });
  t.same(Buffer.concat(data), Buffer.from(whole.subarray(unfrag)), 'fragment data concatenates to the original');
});
