import t from 'tap';
import { DomainSet, lookupName, matchDomainSets, parseDomainEntry } from '../../src/policy/domains.js';
import { parseDomainList } from '../../src/policy/lists.js';

function setOf(...entries: string[]): DomainSet {
  const set = new DomainSet();
  for (const text of entries) {
    const entry = parseDomainEntry(text);
    if (!entry.ok) throw new Error(`${text}: ${entry.reason}`);
    set.add(entry.name, entry.exact, 'test');
  }
  return set;
}

t.test('matching table', async (t) => {
  const set = setOf('ads.example', '=exact.example', 'bücher.example', '10.1.2.3', '[2001:db8::1]', 'CAPS.Example.');
  const table: [string, string | null][] = [
    ['ads.example', 'ads.example'],
    ['x.ads.example', 'ads.example'],
    ['a.b.c.ads.example', 'ads.example'],
    ['badads.example', null],
    ['ads.example.com', null],
    ['example', null],
    ['ADS.Example', 'ads.example'],
    ['x.ads.example.', 'ads.example'],
    ['ads.example:443', 'ads.example'],
    ['exact.example', '=exact.example'],
    ['www.exact.example', null],
    ['caps.example', 'caps.example'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['shop.xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['bücher.example', null], // raw UTF-8 on the wire is malformed and never matches
    ['10.1.2.3', '=10.1.2.3'],
    ['5.10.1.2.3', null], // IP entries are exact only
    ['2001:db8::1', '=2001:db8::1'],
    ['[2001:db8::1]', '=2001:db8::1'],
    ['[2001:db8:0:0::1]:443', '=2001:db8::1'],
    ['2001:0db8::0001', '=2001:db8::1'],
    ['', null],
    ['.', null],
    ['ads..example', null],
    ['a b.ads.example', null],
  ];
  for (const [name, want] of table) {
    t.equal(set.match(name)?.entry ?? null, want, JSON.stringify(name));
  }
});

t.test('entry parsing', async (t) => {
  t.same(parseDomainEntry('=Foo.Example.'), { ok: true, name: 'foo.example', exact: true });
  t.same(parseDomainEntry('münchen.de'), { ok: true, name: 'xn--mnchen-3ya.de', exact: false });
  t.same(parseDomainEntry('1.2.3.4'), { ok: true, name: '1.2.3.4', exact: true });
  t.match(parseDomainEntry('*.example.com'), { ok: false, reason: /write "example.com"/ });
  t.match(parseDomainEntry('example.com:443'), { ok: false, reason: /no port/ });
  t.match(parseDomainEntry('exa mple.com'), { ok: false });
  t.match(parseDomainEntry('-bad.example'), { ok: false });
  t.match(parseDomainEntry(''), { ok: false });
  t.match(parseDomainEntry('a'.repeat(64) + '.example'), { ok: false });
  t.equal(lookupName('WWW.Example.COM.'), 'www.example.com');
  t.equal(lookupName('b\u00fccher.example'), null);
});

t.test('suffix entry wins over an exact duplicate and reports its source', async (t) => {
  const set = new DomainSet();
  set.add('dup.example', true, 'first.txt');
  set.add('dup.example', false, 'second.txt');
  set.add('dup.example', true, 'third.txt');
  t.same(set.match('x.dup.example'), { entry: 'dup.example', source: 'second.txt' });
  t.equal(set.size, 1);
  const other = setOf('other.example');
  t.same(matchDomainSets([set, other], 'a.other.example'), { entry: 'other.example', source: 'test' });
  t.equal(matchDomainSets([set, other], 'nothing.example'), null);
});

t.test('plain and hosts-file lists', async (t) => {
  const text = [
    '\ufeff# comment line',
    'plain.example',
    '  =exact.example   # trailing comment',
    '',
    '0.0.0.0 hosts-a.example hosts-b.example',
    '127.0.0.1\tlocalhost',
    '::1 ip6-localhost ip6-loopback',
    'fe80::1%lo0 localhost',
    '0.0.0.0 0.0.0.0',
    '255.255.255.255 broadcasthost',
    'grüße.example',
    '\r',
    'crlf.example\r',
  ].join('\n');
  const set = new DomainSet();
  const problems = parseDomainList(text, '/lists/a.txt', set);
  t.same(problems, []);
  t.equal(set.size, 6);
  t.same(set.match('www.plain.example'), { entry: 'plain.example', source: '/lists/a.txt' });
  t.equal(set.match('www.exact.example'), null);
  t.ok(set.match('exact.example'));
  t.ok(set.match('x.hosts-b.example'));
  t.ok(set.match('crlf.example'));
  t.ok(set.match('xn--gre-6ka8l.example'));
  t.equal(set.match('localhost'), null);
});

t.test('list problems carry line and column, capped', async (t) => {
  const set = new DomainSet();
  const problems = parseDomainList('ok.example\n  bad..name\nword another\n0.0.0.0 good.example -bad\n', 'l.txt', set);
  t.same(problems.map((p) => [p.line, p.col]), [[2, 3], [3, 1], [4, 22]]);
  t.match(problems[0]!.message, /bad domain "bad\.\.name"/);
  t.match(problems[1]!.message, /one domain per line/);
  t.ok(set.match('good.example'), 'good names on a bad line still load');
  const many = Array.from({ length: 50 }, (_, i) => `bad${i}..x`).join('\n');
  const capped = parseDomainList(many, 'm.txt', new DomainSet());
  t.equal(capped.length, 21);
  t.match(capped[20]!.message, /and 30 more problems/);
});

t.test('property: an entry matches exactly itself and the names below it', async () => {
  const fc = (await import('fast-check')).default;
  const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?$/);
  const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join('.'))
    .filter((n) => !/(?:^|\.)\d+$/.test(n));
  fc.assert(fc.property(fc.array(name, { minLength: 1, maxLength: 30 }), name, fc.boolean(), (entries, probe, exact) => {
    const set = new DomainSet();
    for (const e of entries) set.add(e, exact, 'p');
    const want = entries.filter((e) => probe === e || (!exact && probe.endsWith(`.${e}`)));
    const got = set.match(probe);
    if (want.length === 0) return got === null;
    // The most specific (longest) matching entry is reported.
    const best = want.sort((a, b) => b.length - a.length)[0]!;
    return got !== null && got.entry === (exact ? `=${best}` : best);
  }), { numRuns: 500 });
});

t.test('many entries: growth keeps every name findable', async (t) => {
  const set = new DomainSet();
  const names = Array.from({ length: 20000 }, (_, i) => `n${i.toString(36)}.grow${i % 97}.example`);
  for (const n of names) set.add(n, false, 'g');
  set.seal();
  t.equal(set.size, names.length);
  let found = 0;
  for (const n of names) if (set.match(`www.${n}`)?.entry === n) found++;
  t.equal(found, names.length);
  let stray = 0;
  for (let i = 0; i < 20000; i++) if (set.match(`x${i.toString(36)}.grow${i % 97}.example`) !== null) stray++;
  t.equal(stray, 0);
  set.add('late.example', true, 'g');
  t.same(set.match('late.example'), { entry: '=late.example', source: 'g' }, 'adding after seal still works');
});
