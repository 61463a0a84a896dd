import { SocketAddress } from 'node:net';
import t from 'tap';
import { formatIpv4, formatIpv6, parseIp, parseIpv4, parseIpv6 } from '../../src/packet/addr.js';

/** How Node itself prints an IPv6 address (libuv inet_ntop). */
function nodeText(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

t.test('IPv4 text', async (t) => {
  t.equal(formatIpv4(Uint8Array.of(9, 10, 0, 1, 2, 255), 1), '10.0.1.2');
  t.equal(formatIpv4(Uint8Array.of(255, 255, 255, 255), 0), '255.255.255.255');
  t.same(parseIpv4('192.0.2.1'), Uint8Array.of(192, 0, 2, 1));
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1..2.3', '1.2.3.4 ', 'a.b.c.d', '1.2.3.-4']) {
    t.equal(parseIpv4(bad), null, JSON.stringify(bad));
  }
});

t.test('IPv6 text matches known strings', async (t) => {
  const cases: [string, string][] = [
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fd00:0:0:0:0:0:0:2', 'fd00::2'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // the longest run wins
    ['FE80:0:0:0:0:0:0:ABCD', 'fe80::abcd'],
    ['0:0:0:0:0:ffff:102:304', '::ffff:1.2.3.4'], // IPv4-mapped
    ['0:0:0:0:0:0:102:304', '::1.2.3.4'], // IPv4-compatible, as libuv prints it
    ['64:ff9b:0:0:0:0:102:304', '64:ff9b::102:304'],
    ['1:2:3:4:5:6:7:0', '1:2:3:4:5:6:7:0'],
    ['1:0:0:0:0:0:0:0', '1::'],
  ];
  for (const [input, want] of cases) {
    const bytes = parseIpv6(input);
    if (bytes === null) throw new Error(`did not parse ${input}`);
    t.equal(formatIpv6(bytes, 0), want, input);
    t.equal(nodeText(bytes), want, `node agrees on ${input}`);
  }
});

t.test('IPv6 text matches node:net for every zero-group pattern and random addresses', async (t) => {
  const buf = new Uint8Array(20);
  let mismatches = 0;
  let checked = 0;
  const check = () => {
    const bytes = buf.subarray(2, 18);
    const got = formatIpv6(buf, 2);
    if (got !== nodeText(bytes)) {
      if (mismatches++ < 5) t.fail(`${got} vs node ${nodeText(bytes)}`);
    }
    const back = parseIpv6(got);
    if (back === null || Buffer.compare(back, bytes) !== 0) {
      if (mismatches++ < 5) t.fail(`${got} does not parse back`);
    }
    checked++;
  };
  const values = [1, 0xffff, 0xabc, 0x100];
  for (let mask = 0; mask < 256; mask++) {
    for (const v of values) {
      for (let g = 0; g < 8; g++) {
        const x = mask & (1 << g) ? 0 : (v + g) & 0xffff || 1;
        buf[2 + 2 * g] = x >> 8;
        buf[3 + 2 * g] = x & 0xff;
      }
      check();
      // the same with the IPv4-mapped marker in group 5
      buf[12] = 0xff;
      buf[13] = 0xff;
      check();
    }
  }
  let seed = 12345;
  for (let i = 0; i < 5000; i++) {
    for (let g = 0; g < 8; g++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const x = seed % 3 === 0 ? seed >>> 16 : 0;
      buf[2 + 2 * g] = x >> 8;
      buf[3 + 2 * g] = x & 0xff;
    }
    check();
  }
  t.equal(mismatches, 0, `${checked} addresses compared with node:net`);
});

t.test('IPv6 parse errors and parseIp', async (t) => {
  for (const bad of ['', ':', '1:2', '1::2::3', '12345::', 'g::', '1:2:3:4:5:6:7:8:9', '::1.2.3', '1:2:3:4:5:6:7::8:9']) {
    t.equal(parseIpv6(bad), null, JSON.stringify(bad));
  }
  t.equal(parseIp('10.1.2.3')?.length, 4);
  t.equal(parseIp('::ffff:10.1.2.3')?.length, 16);
  t.equal(parseIp('nonsense'), null);
});

t.test('cached text is right after evictions and for the same address at other offsets', async (t) => {
  const buf = new Uint8Array(64);
  let wrong = 0;
  for (let i = 0; i < 3 * 4096; i++) {
    const off = i % 7;
    buf[off] = 10;
    buf[off + 1] = (i >> 16) & 0xff;
    buf[off + 2] = (i >> 8) & 0xff;
    buf[off + 3] = i & 0xff;
    if (formatIpv4(buf, off) !== `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`) wrong++;
    buf.fill(0, off, off + 16);
    buf[off] = 0x20;
    buf[off + 1] = 0x01;
    buf[off + 14] = (i >> 8) & 0xff;
    buf[off + 15] = i & 0xff;
    if (formatIpv6(buf, off) !== nodeText(buf.subarray(off, off + 16))) wrong++;
    buf.fill(0);
  }
  t.equal(wrong, 0);
});
