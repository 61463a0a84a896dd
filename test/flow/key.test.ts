import t from 'tap';
import { buildTcpPacket } from '../../src/packet/build.js';
import { decodeIp } from '../../src/packet/decode.js';
import { ACK } from '../../src/packet/types.js';
import type { TcpPacket } from '../../src/packet/types.js';
import { flowKey, keyAddr, keyPort, srcIsLow } from '../../src/flow/key.js';

function tcp(src: string, dst: string, sport: number, dport: number): TcpPacket {
  const d = decodeIp(buildTcpPacket({ src, dst, sport, dport, seq: 1, flags: ACK }));
  if (d.kind !== 'tcp') throw new Error('not tcp');
  return d.packet;
}

/** Endpoint pairs: lower first, higher first, same address, same endpoint, IPv6 and IPv4-mapped. */
const pairs: [string, number, string, number][] = [
  ['10.0.1.2', 40000, '10.0.2.2', 443],
  ['192.0.2.200', 80, '10.9.8.7', 51234],
  ['10.0.0.1', 5000, '10.0.0.1', 4000],
  ['127.0.0.1', 7000, '127.0.0.1', 7000],
  ['2001:db8::1', 40000, 'fe80::abcd', 443],
  ['fd00::2', 443, '2001:db8:0:1:1:1:1:1', 1],
  ['::ffff:1.2.3.4', 1234, '::1', 80],
];

t.test('both directions share a key, and the key gives back each endpoint as the decoder prints it', async (t) => {
  for (const [a, ap, b, bp] of pairs) {
    const there = tcp(a, b, ap, bp);
    const back = tcp(b, a, bp, ap);
    const key = flowKey(there);
    t.equal(flowKey(back), key, `${a} ${b}`);
    const low = srcIsLow(there);
    if (a !== b || ap !== bp) t.equal(srcIsLow(back), !low, 'exactly one direction has the lower source');
    t.equal(keyAddr(key, low), there.src);
    t.equal(keyPort(key, low), there.sport);
    t.equal(keyAddr(key, !low), there.dst);
    t.equal(keyPort(key, !low), there.dport);
  }
});
