import t from 'tap';
import { ipFromFrame } from '../../src/capture/linktype.js';
import { readCaptureBatches } from '../../src/capture/pcapfile.js';
import { buildTcpPacket } from '../../src/packet/build.js';
import {
  computeTcpChecksum,
  foldChecksum,
  internetChecksum,
  ipv4HeaderChecksumOk,
  onesComplementSum,
  tcpChecksumOk,
} from '../../src/packet/checksum.js';
import { decodeIp } from '../../src/packet/decode.js';
import { ACK, type TcpPacket } from '../../src/packet/types.js';

const PCAPS = '/work/shared/pcaps/';

t.test('RFC 1071 example and odd lengths', async (t) => {
  // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2, checksum 220d.
  const b = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
  t.equal(foldChecksum(onesComplementSum(b, 0, b.length)), 0x220d);
  t.equal(internetChecksum(b), 0x220d);
  // An odd last byte is padded with a zero byte.
  t.equal(internetChecksum(Uint8Array.of(0x12, 0x34, 0x56)), internetChecksum(Uint8Array.of(0x12, 0x34, 0x56, 0x00)));
  // Chaining ranges gives the same as one pass; the unrolled and plain loops agree.
  const long = Uint8Array.from({ length: 1001 }, (_, i) => (i * 37 + 11) & 0xff);
  for (let n = 0; n <= 40; n++) {
    let slow = 0;
    for (let i = 0; i + 1 < n; i += 2) slow += (long[i] << 8) | long[i + 1];
    if (n % 2) slow += long[n - 1] << 8;
    t.equal(onesComplementSum(long, 0, n), slow, `length ${n}`);
  }
  t.equal(
    foldChecksum(onesComplementSum(long, 100, long.length, onesComplementSum(long, 0, 100))),
    internetChecksum(long),
  );
  t.equal(internetChecksum(new Uint8Array(4)), 0xffff, 'all zero');
});

t.test('built packets verify; any flipped bit fails', async (t) => {
  for (const src of ['10.0.0.1', 'fd00::1']) {
    const dst = src.includes(':') ? 'fd00::2' : '10.0.0.2';
    for (const payload of ['', 'a', 'ab', 'odd-length payload!']) {
      const bytes = buildTcpPacket({ src, dst, sport: 1, dport: 2, seq: 3, flags: ACK, payload });
      const r = decodeIp(bytes);
      if (r.kind !== 'tcp') throw new Error('not tcp');
      t.ok(tcpChecksumOk(r.packet), `${src} payload ${payload.length}`);
      if (src.includes('.')) t.ok(ipv4HeaderChecksumOk(bytes));
      const bad = decodeIp(buildTcpPacket({ src, dst, sport: 1, dport: 2, seq: 3, flags: ACK, payload, badChecksum: true }));
      if (bad.kind !== 'tcp') throw new Error('not tcp');
      t.notOk(tcpChecksumOk(bad.packet), 'badChecksum');
      // Flip every bit covered by the checksum (addresses, TCP header, payload): always detected.
      const p = r.packet;
      const covered = [...range(p.family === 4 ? 12 : 8, p.family === 4 ? 20 : 40), ...range(p.tcpOffset, bytes.length)];
      let missed = 0;
      for (const i of covered) {
        for (let bit = 0; bit < 8; bit++) {
          bytes[i] ^= 1 << bit;
          if (tcpChecksumOk(p)) missed++;
          bytes[i] ^= 1 << bit;
        }
      }
      t.equal(missed, 0, 'every single-bit error detected');
    }
  }
  const v4 = buildTcpPacket({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, seq: 3, flags: ACK });
  v4[8]--;
  t.notOk(ipv4HeaderChecksumOk(v4), 'IPv4 header checksum covers the TTL');
  const z = buildTcpPacket({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, seq: 3, flags: ACK });
  const want = (z[36] << 8) | z[37];
  z[36] = 0;
  z[37] = 0;
  t.equal(computeTcpChecksum(z, 4, 20), want, 'computeTcpChecksum with the field zeroed');
});

function* range(a: number, b: number): Generator<number> {
  for (let i = a; i < b; i++) yield i;
}

/**
 * tshark 4.0.17 `-o tcp.check_checksum:TRUE`, field tcp.checksum.status: [TCP frames, frames
 * with a bad checksum, their numbers when listed]. Offloaded checksums on the capturing host
 * explain most bad ones. Files not listed carry no TCP.
 */
const TSHARK_CHECKSUMS: Record<string, [number, number, number[]?]> = {
  'gopacket__test_loopback.pcap': [24, 24],
  'suricata-verify__bug-5881-01__input.pcap': [42, 0],
  'suricata-verify__community-id-ipv6__input.pcap': [70, 42, [1, 3, 4, 6, 7, 9, 10, 11, 12, 13, 16, 17, 23, 24, 25, 26, 32, 33, 35, 37, 38, 40, 41, 42, 43, 44, 45, 46, 49, 53, 55, 56, 57, 58, 59, 60, 61, 62, 64, 65, 66, 69]],
  'suricata-verify__filestore-v2.1-forced__suricata-update-pdf.pcap': [175, 0],
  'suricata-verify__http-post-file__input.pcap': [28, 28],
  'suricata-verify__http-range-file__input.pcap': [316, 0],
  'suricata-verify__sip-tcp-method__sip-tcp.pcap': [11, 11],
  'suricata-verify__tcp-fastopen-10-syn-data-ignore__input.pcap': [52, 0],
  'suricata-verify__tls__tls-client-hello-frag-01__dump_mtu300.pcap': [62, 50],
  'suricata-verify__tls__tls-fin-close-data-01__debug-s13.pcap': [24, 12, [1, 3, 4, 7, 9, 11, 13, 14, 15, 18, 19, 21]],
  'suricata-verify__tls__tls-fingerprint-alert__input.pcap': [28, 0],
  'suricata-verify__tls__tls13-draft28__tls13_draft28.pcap': [30, 30],
  'tcpdump__print-flags.pcap': [10, 2, [4, 6]],
  'tcpdump__ssh.pcap': [54, 0],
  'zeek__ftp__ipv6-retr-samba.pcap': [37, 0],
  'zeek__http__206_example_a.pcap': [672, 0],
  'zeek__http__bro.org.pcap': [751, 0],
  'zeek__http__docker-http-upgrade.pcap': [200, 200],
  'zeek__http__m57-long-49583-80.pcap': [227, 0],
  'zeek__http__pipelined-requests.pcap': [49, 0],
  'zeek__mysql__plain-amazon-rds.pcap': [19, 0],
  'zeek__pop3__pop3.pcap': [125, 0],
  'zeek__postgresql__psql-aws-ssl-require.pcap': [30, 0],
  'zeek__ssh__ssh_kex_mlkem.pcap': [3763, 0],
  'zeek__tls__certificate-request-failed.pcap': [12, 12],
  'zeek__tls__chrome-1250-tls-x25519-kyber.pcap': [15, 15],
  'zeek__tls__chrome-34-google.pcap': [42, 23, [1, 3, 4, 9, 10, 11, 15, 16, 17, 18, 19, 20, 21, 27, 28, 29, 30, 31, 33, 38, 39, 40, 41]],
  'zeek__tls__hrr.pcap': [19, 0],
  'zeek__tls__openjdk-25.0.2-zeek.org.pcap': [6, 1, [6]],
  'zeek__tls__tls-early-alert.pcap': [17, 0],
  'zeek__tls__tls13-ech.pcap': [69, 0],
  'zeek__tls__tls13_wolfssl.pcap': [21, 0],
  'zeek__wikipedia.pcap': [78, 0],
  'zeek__workshop_2011_browse.pcap': [121, 0],
};

t.test('checksums of real captures agree with tshark', async (t) => {
  for (const [name, [wantTcp, wantBad, wantList]] of Object.entries(TSHARK_CHECKSUMS)) {
    const bad: number[] = [];
    let tcp = 0;
    let packet: TcpPacket | undefined;
    for await (const batch of readCaptureBatches(PCAPS + name)) {
      for (const r of batch) {
        const ip = ipFromFrame(r.linktype, r.data);
        const d = ip && decodeIp(ip);
        if (d?.kind !== 'tcp') continue;
        tcp++;
        packet = d.packet;
        if (!tcpChecksumOk(packet)) bad.push(r.index);
      }
    }
    t.equal(tcp, wantTcp, `${name}: TCP frames`);
    t.equal(bad.length, wantBad, `${name}: bad checksums`);
    if (wantList) t.same(bad, wantList, `${name}: frames with bad checksums`);
  }
});
