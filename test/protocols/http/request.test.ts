// The reader on real client streams (test/fixtures/http): what it reports, and that every way of
// cutting a stream (every prefix, every split point, byte by byte) reports the same events.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HttpRequestReader, type HttpEvent, type HttpRequest } from '../../../src/protocols/http/request.js';
import { FIXTURES, FIXTURE_DIR, bytes, feedBytewise, feedCuts, feedWhole, fixture, prng } from './helpers.js';

/** method host path per request, 'tunnel' for a tunnel, for a compact comparison. */
function summary(events: readonly HttpEvent[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e.kind === 'request') out.push(`${e.request.method} ${e.request.host} ${e.request.path}`);
    else if (e.kind === 'tunnel') out.push('tunnel');
    else if (e.kind !== 'bodyEnd') out.push(`${e.kind} ${e.reason}`);
  }
  return out;
}

const mozilla = (p: string) => `GET www.mozilla.org ${p}`;
const WANT: Record<(typeof FIXTURES)[number], string[]> = {
  'zeek-pipelined-5-gets': [
    mozilla('/style/enhanced.css'),
    mozilla('/script/urchin.js'),
    mozilla('/images/template/screen/bullet_utility.png'),
    mozilla('/images/template/screen/key-point-top.png'),
    mozilla('/projects/calendar/images/header-sunbird.png'),
  ],
  'zeek-bro-org-keepalive': [
    'GET bro.org /',
    'GET bro.org /css/pygments.css',
    'GET bro.org /js/jquery.tweet.js',
    'GET bro.org /js/superfish.js',
    'GET bro.org /images/bro-eyes.png',
    'GET bro.org /images/to-top.gif',
    'GET bro.org /js/breadcrumbs.js',
  ],
  'suricata-post-cl-bodies': [
    'POST localhost /api/v4/users/login',
    'POST localhost /api/v4/uploads',
    'POST localhost /api/v4/uploads/is8j4b6s7i839eo38axwmx5pnr',
  ],
  'zeek-docker-post-cl': [
    'HEAD 192.168.122.87 /_ping',
    'POST 192.168.122.87 /v1.41/containers/create',
    'POST 192.168.122.87 /v1.41/containers/cc4fc8e49cadbb8bc41437dc2f9979a72293eabc3f0ea5ce48b77f43cb1f1d5e/wait?condition=next-exit',
  ],
  'zeek-docker-upgrade-tcp': [
    'POST 192.168.122.87 /v1.41/containers/cc4fc8e49cadbb8bc41437dc2f9979a72293eabc3f0ea5ce48b77f43cb1f1d5e/attach?stderr=1&stdin=1&stdout=1&stream=1',
    'tunnel',
  ],
  'gopacket-chrome23-keepalive': [
    'GET localhost /pkg/github.com/gconnell/gopacket/',
    'GET localhost /doc/style.css',
    'GET localhost /doc/godocs.js',
  ],
  'curl-get': ['GET 127.0.0.1 /'],
  'curl-post-then-get': ['POST 127.0.0.1 /form', 'GET 127.0.0.1 /next'],
  'curl-chunked-then-other-host': ['POST 127.0.0.1 /up', 'GET other.test /second'],
  'curl-proxy-absolute-form': ['GET blocked.test /page'],
  'curl-connect-then-clienthello': ['CONNECT blocked.test ', 'tunnel'],
  'chromium-page-keepalive': ['GET 127.0.0.1 /', 'GET 127.0.0.1 /a.css'],
  'chromium-post-keepalive': ['GET 127.0.0.1 /c.png', 'POST 127.0.0.1 /api/post', 'GET 127.0.0.1 /favicon.ico'],
  'chromium-proxy-absolute-form': ['GET blocked.test /'],
  'chromium-connect-then-clienthello': ['CONNECT update.googleapis.com ', 'tunnel'],
};

t.test('fixtures: the requests tshark and the clients saw', async (t) => {
  for (const name of FIXTURES) {
    const data = fixture(name);
    const events = feedWhole(data);
    t.same(summary(events), WANT[name], name);
    // Every request is followed by its body end (or a tunnel), and offsets tile the stream.
    let at = 0;
    for (const e of events) {
      if (e.kind === 'request') {
        t.ok(e.headStart >= at && e.headEnd > e.headStart, `${name}: head offsets`);
        at = e.headEnd;
      } else if (e.kind === 'bodyEnd') {
        t.ok(e.end >= at, `${name}: body end`);
        at = e.end;
      } else if (e.kind === 'tunnel') at = e.offset;
    }
    const last = events[events.length - 1]!;
    if (last.kind === 'bodyEnd') t.equal(last.end, data.length, `${name}: the last body ends the stream`);
  }
});

t.test('the pcap fixtures agree with tshark (shared/pcaps expected files)', async (t) => {
  const pcaps = join(FIXTURE_DIR, '..', '..', '..', '..', 'shared', 'pcaps');
  const cases: Array<[string, string, number, number]> = [
    ['zeek-pipelined-5-gets', 'zeek__http__pipelined-requests.pcap', 1673, 5],
    ['suricata-post-cl-bodies', 'suricata-verify__http-post-file__input.pcap', 52093, 3],
    ['gopacket-chrome23-keepalive', 'gopacket__test_loopback.pcap', 58799, 3],
  ];
  for (const [name, pcap, port, count] of cases) {
    let lines: Array<{ http_method: string; http_host: string; http_uri: string; src_port: number }>;
    try {
      lines = readFileSync(`${pcaps}/${pcap}.expected.jsonl`, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l))
        .filter((l) => l.src_port === port);
    } catch {
      t.pass(`${pcap}: shared/pcaps not beside the repo, skipped`);
      continue;
    }
    const requests = feedWhole(fixture(name)).flatMap((e) => (e.kind === 'request' ? [e.request] : []));
    t.equal(lines.length, count, `${pcap}: expected lines`);
    t.same(
      requests.map((r) => [r.method, r.headers.find(([n]) => n === 'host')?.[1], r.target]),
      lines.map((l) => [l.http_method, l.http_host, l.http_uri]),
      `${name} matches tshark`,
    );
  }
});

t.test('a Chromium request head in detail', async (t) => {
  const events = feedWhole(fixture('chromium-post-keepalive'));
  const post = events.find((e) => e.kind === 'request' && e.request.method === 'POST');
  if (post?.kind !== 'request') throw new Error('no POST');
  const want: Partial<HttpRequest> = {
    method: 'POST', target: '/api/post', targetForm: 'origin', version: '1.1', path: '/api/post',
    host: '127.0.0.1', port: 18080, hostHeader: '127.0.0.1', contentLength: 7, chunked: false,
    connectionClose: false,
  };
  t.match(post.request, want);
  t.same(post.request.headers[2], ['content-length', '7']);
  t.same(post.request.headers.find(([n]) => n === 'sec-ch-ua-platform'), ['sec-ch-ua-platform', '"Linux"']);
  t.equal(post.headStart, 566);
  t.same(events[events.indexOf(post) + 1], { kind: 'bodyEnd', end: 1152 });
});

t.test('every split point gives the same events as feeding whole', async (t) => {
  for (const name of FIXTURES) {
    const data = fixture(name);
    const whole = JSON.stringify(feedWhole(data));
    let bad = -1;
    for (let cut = 0; cut <= data.length && bad < 0; cut++) {
      if (JSON.stringify(feedCuts(data, [cut])) !== whole) bad = cut;
    }
    t.equal(bad, -1, `${name}: ${data.length + 1} two-piece splits`);
  }
});

t.test('random multi-piece splits and byte by byte give the same events', async (t) => {
  const rand = prng(7);
  for (const name of FIXTURES) {
    const data = fixture(name);
    const whole = JSON.stringify(feedWhole(data));
    t.equal(JSON.stringify(feedBytewise(data)), whole, `${name}: byte by byte`);
    let same = true;
    for (let round = 0; round < 200 && same; round++) {
      const cuts: number[] = [];
      for (let at = 0; ; ) {
        at += 1 + Math.floor(rand() * (round % 2 === 0 ? 8 : 600));
        if (at >= data.length) break;
        cuts.push(at);
      }
      same = JSON.stringify(feedCuts(data, cuts)) === whole;
    }
    t.ok(same, `${name}: 200 random segmentations`);
  }
});

t.test('every prefix reports a prefix of the events, and whole requests only', async (t) => {
  for (const name of FIXTURES) {
    const data = fixture(name);
    const whole = feedWhole(data).map((e) => JSON.stringify(e));
    let bad = -1;
    for (let n = 0; n <= data.length && bad < 0; n++) {
      const got = feedWhole(data.subarray(0, n)).map((e) => JSON.stringify(e));
      if (got.length > whole.length || got.some((e, i) => e !== whole[i])) bad = n;
    }
    t.equal(bad, -1, `${name}: ${data.length + 1} prefixes`);
  }
});

t.test('state queries while a stream arrives', async (t) => {
  const reader = new HttpRequestReader();
  t.equal(reader.needMoreForHead(), false, 'nothing yet');
  t.same(reader.feed(bytes('POST /a HTTP/1.1\r\nHost: a.test\r\nContent-')), []);
  t.equal(reader.needMoreForHead(), true);
  t.equal(reader.bufferedHeadBytes, 40);
  t.equal(reader.inBody(), false);
  const head = reader.feed(bytes('Length: 10\r\n\r\n12345'));
  t.equal(head.length, 1);
  t.equal(reader.needMoreForHead(), false);
  t.equal(reader.inBody(), true);
  t.equal(reader.bodyRemaining, 5);
  t.equal(reader.bufferedHeadBytes, 0);
  const end = reader.feed(bytes('67890GET'));
  t.same(end, [{ kind: 'bodyEnd', end: 64 }]);
  t.equal(reader.inBody(), false);
  t.equal(reader.needMoreForHead(), true, 'the next head began');
  t.equal(reader.bufferedHeadBytes, 3);
  t.equal(reader.offset, 67);

  const chunked = new HttpRequestReader();
  chunked.feed(bytes('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab'));
  t.equal(chunked.inBody(), true);
  t.equal(chunked.bodyRemaining, undefined, 'unknown inside a chunked body');
  t.equal(chunked.finished, false);
});

t.test('a Buffer, a plain Uint8Array and a view into a larger buffer read the same', async (t) => {
  const data = fixture('curl-post-then-get');
  const big = new Uint8Array(data.length + 20);
  big.set(data, 10);
  const view = big.subarray(10, 10 + data.length);
  const want = JSON.stringify(feedWhole(data));
  t.equal(JSON.stringify(feedWhole(Uint8Array.from(data))), want);
  t.equal(JSON.stringify(feedWhole(view)), want);
  t.equal(JSON.stringify(feedCuts(view, [5, 100])), want);
});
