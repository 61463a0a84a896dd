import t from 'tap';
import { CidrSet, formatIp, parseCidr, parseIp } from '../../src/policy/cidr.js';

function cidrs(...texts: string[]): CidrSet {
  return new CidrSet(texts.map((text) => {
    const parsed = parseCidr(text);
    if (!parsed.ok) throw new Error(`${text}: ${parsed.reason}`);
    return parsed.cidr;
  }));
}

t.test('address parsing', async (t) => {
  const good: [string, string][] = [
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['::ffff:10.1.2.3', '::ffff:a01:203'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['[fe80::1]', 'fe80::1'],
  ];
  for (const [text, want] of good) t.equal(formatIp(parseIp(text)!), want, text);
  const bad = ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', ':::', '1:2:3:4:5:6:7:8:9',
    '1::2::3', '1:2:3:4:5:6:7:8::', 'fe80::1%eth0', '12345::', 'g::1', '::1.2.3', '1.2.3.4::', ':1::', '1::2:'];
  for (const text of bad) t.equal(parseIp(text), null, JSON.stringify(text));
});

t.test('CIDR parsing', async (t) => {
  t.match(parseCidr('10.0.0.0/8'), { ok: true, cidr: { text: '10.0.0.0/8', prefix: 8 } });
  t.match(parseCidr('10.1.2.3'), { ok: true, cidr: { text: '10.1.2.3/32' } });
  t.match(parseCidr('0.0.0.0/0'), { ok: true, cidr: { text: '0.0.0.0/0' } });
  t.match(parseCidr('2001:DB8::/32'), { ok: true, cidr: { text: '2001:db8::/32' } });
  t.match(parseCidr('::/0'), { ok: true, cidr: { text: '::/0' } });
  t.match(parseCidr('10.0.0.1/8'), { ok: false, reason: /did you mean 10\.0\.0\.0\/8/ });
  t.match(parseCidr('2001:db8::1/64'), { ok: false, reason: /did you mean 2001:db8::\/64/ });
  t.match(parseCidr('10.0.0.0/33'), { ok: false, reason: /0-32/ });
  t.match(parseCidr('::/129'), { ok: false, reason: /0-128/ });
  t.match(parseCidr('10.0.0.0/'), { ok: false });
  t.match(parseCidr('10.0.0.0/-1'), { ok: false });
  t.match(parseCidr('host.example/24'), { ok: false, reason: /not an IPv4 or IPv6 address/ });
});

t.test('contains: edges', async (t) => {
  const set = cidrs('10.0.0.0/8', '192.168.1.128/25', '2001:db8:8000::/33', 'fe80::1');
  const table: [string, boolean][] = [
    ['10.0.0.0', true], ['10.255.255.255', true], ['9.255.255.255', false], ['11.0.0.0', false],
    ['192.168.1.127', false], ['192.168.1.128', true], ['192.168.1.255', true], ['192.168.2.0', false],
    ['2001:db8:7fff:ffff:ffff:ffff:ffff:ffff', false], ['2001:db8:8000::', true],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', true], ['2001:db9::', false],
    ['fe80::1', true], ['fe80::2', false],
    ['::ffff:10.9.8.7', true], // IPv4-mapped addresses match IPv4 blocks
    ['::ffff:11.9.8.7', false],
    ['::10.9.8.7', false], // IPv4-compatible (deprecated) is not mapped
    ['not an address', false],
  ];
  for (const [addr, want] of table) t.equal(set.contains(addr), want, addr);
  t.equal(cidrs('0.0.0.0/0').contains('203.0.113.9'), true);
  t.equal(cidrs('0.0.0.0/0').contains('2001:db8::1'), false, 'families do not mix');
  t.equal(cidrs('::/0').contains('2001:db8::1'), true);
  t.equal(cidrs('1.2.3.4/31').contains('1.2.3.5'), true);
  t.equal(cidrs('::/127').contains('::1'), true);
  t.equal(cidrs('128.0.0.0/1').contains('255.0.0.1'), true, 'high bit (unsigned words)');
  t.equal(cidrs('8000::/1').contains('ffff::'), true);
  t.equal(cidrs('8000::/1').contains('7fff::'), false);
  t.equal(cidrs('2001:db8::/127').match('2001:db8::1')?.text, '2001:db8::/127');
});
