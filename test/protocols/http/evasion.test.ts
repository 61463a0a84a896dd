// EVASION.md entries 15-18, 21, 22 and 27-31 against the HTTP request reader: each catalogue
// entry is a named test. Every case is also fed byte by byte and must report the same events.
import t, { type Test } from 'tap';
import type { HttpAmbiguousEvent, HttpEvent, HttpRequest } from '../../../src/protocols/http/request.js';
import { bytes, feedBytewise, feedSegments, feedWhole, fixture } from './helpers.js';

/** Feeds `text` whole and byte by byte, checks both agree, returns the events. */
function read(t: Test, text: string | Uint8Array): HttpEvent[] {
  const data = typeof text === 'string' ? bytes(text) : text;
  const whole = feedWhole(data);
  t.same(feedBytewise(data), whole, 'byte by byte = whole');
  return whole;
}

function requests(events: HttpEvent[]): HttpRequest[] {
  return events.flatMap((e) => (e.kind === 'request' ? [e.request] : []));
}

function only(t: Test, events: HttpEvent[]): HttpRequest {
  const r = requests(events);
  t.equal(r.length, 1, 'one request');
  return r[0]!;
}

function ambiguous(events: HttpEvent[]): HttpAmbiguousEvent | undefined {
  return events.find((e): e is HttpAmbiguousEvent => e.kind === 'ambiguous');
}

const TAIL = 'User-Agent: x\r\n\r\n';

t.test('EVASION 15: header name case, value case, port, trailing dot', async (t) => {
  const r = only(t, read(t, `GET / HTTP/1.1\r\nhoSt: Blocked.TEST.:443\r\n${TAIL}`));
  t.equal(r.host, 'blocked.test');
  t.equal(r.port, 443);
  t.equal(r.hostHeader, 'blocked.test');
  t.same(r.headers[0], ['host', 'Blocked.TEST.:443'], 'the raw value is kept');
  t.equal(only(t, read(t, `GET / HTTP/1.1\r\nHOST: BLOCKED.test\r\n${TAIL}`)).host, 'blocked.test');
  t.equal(only(t, read(t, `GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8080\r\n${TAIL}`)).host, '2001:db8::1');
});

t.test('EVASION 16: whitespace and line-ending games', async (t) => {
  t.test('Host:x without a space', async (t) => {
    t.equal(only(t, read(t, `GET / HTTP/1.1\r\nHost:blocked.test\r\n${TAIL}`)).host, 'blocked.test');
  });
  t.test('tabs around the Host value', async (t) => {
    const r = only(t, read(t, `GET / HTTP/1.1\r\nHost:\t blocked.test \t\r\n${TAIL}`));
    t.equal(r.host, 'blocked.test');
    t.same(r.headers[0], ['host', 'blocked.test']);
  });
  t.test('GET  / with several spaces and tabs between the parts', async (t) => {
    for (const line of ['GET  /  HTTP/1.1', 'GET\t/\tHTTP/1.1', 'GET \t / HTTP/1.1 ', 'GET / HTTP/1.1\t']) {
      const r = only(t, read(t, `${line}\r\nHost: blocked.test\r\n\r\n`));
      t.match(r, { method: 'GET', target: '/', version: '1.1', host: 'blocked.test' }, JSON.stringify(line));
    }
    t.same(read(t, ' GET / HTTP/1.1\r\nHost: a\r\n\r\n'), [{ kind: 'invalid', reason: 'bad method', offset: 0 }], 'leading space');
  });
  t.test('leading empty lines (CRLF and bare LF) are skipped', async (t) => {
    const events = read(t, `\r\n\n\r\nGET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n`);
    t.match(events[0], { kind: 'request', headStart: 5, request: { host: 'blocked.test' } });
    const after = read(t, `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n\r\nGET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n`);
    t.same(requests(after).map((r) => r.host), ['a', 'blocked.test'], 'blank lines after a body (old IE)');
  });
  t.test('bare LF line endings, also mixed with CRLF', async (t) => {
    const r = only(t, read(t, 'GET / HTTP/1.1\nHost: blocked.test\nAccept: */*\r\n\n'));
    t.equal(r.host, 'blocked.test');
    t.same(r.headers, [['host', 'blocked.test'], ['accept', '*/*']]);
  });
});

t.test('EVASION 17: Host pushed past several KB of padding headers, in separate segments', async (t) => {
  const padding = Array.from({ length: 24 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(300)}\r\n`).join('');
  const text = `GET / HTTP/1.1\r\n${padding}Host: blocked.test\r\n\r\n`;
  t.ok(text.length > 7000);
  const data = bytes(text);
  const segments: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += 536) segments.push(data.subarray(at, at + 536));
  const events = feedSegments(segments);
  t.equal(only(t, events).host, 'blocked.test');
  t.same(read(t, text), events);
  // The same past maxHeadBytes: the head is refused, not half-inspected.
  const tooBig = feedSegments(segments, { maxHeadBytes: 4096 });
  t.same(tooBig, [{ kind: 'invalid', reason: 'head too large', offset: 4096 }]);
});

t.test('EVASION 18: keep-alive and pipelining, every request decided', async (t) => {
  t.test('a second request in the same segment names a blocked host', async (t) => {
    const events = read(t, 'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /x HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
    t.same(requests(events).map((r) => r.host), ['allowed.test', 'blocked.test']);
    t.same(events.map((e) => e.kind), ['request', 'bodyEnd', 'request', 'bodyEnd']);
  });
  t.test('after a POST with a Content-Length body', async (t) => {
    const events = read(t, 'POST /f HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 27\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
    t.same(requests(events).map((r) => r.host), ['allowed.test', 'blocked.test'], 'a request inside the body is body');
  });
  t.test('after a chunked body, a second request whose Host differs', async (t) => {
    const events = read(t, 'POST /f HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '1b;name=value\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n' +
      'GET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
    t.same(requests(events).map((r) => r.host), ['allowed.test', 'blocked.test']);
    t.equal(requests(events)[0]!.chunked, true);
  });
  t.test('the recorded curl stream: chunked upload, then other.test', async (t) => {
    const events = read(t, fixture('curl-chunked-then-other-host'));
    t.same(requests(events).map((r) => r.host), ['127.0.0.1', 'other.test']);
  });
});

t.test('EVASION 21: CONNECT to a blocked authority with an allowed Host, then the tunnelled CH', async (t) => {
  const data = fixture('curl-connect-then-clienthello');
  const events = read(t, data);
  const r = only(t, events);
  t.match(r, { method: 'CONNECT', targetForm: 'authority', target: 'blocked.test:443', host: 'blocked.test', port: 443, hostHeader: 'allowed.test' });
  t.same(events[1], { kind: 'tunnel', offset: 112 });
  t.equal(data[112], 0x16, 'the tunnel starts with a TLS handshake record');
  t.equal(events.length, 2, 'the ClientHello is not read as HTTP');
  const v6 = only(t, read(t, 'CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n'));
  t.match(v6, { host: '2001:db8::1', port: 443 });
  t.same(read(t, 'CONNECT blocked.test HTTP/1.1\r\n\r\n'), [{ kind: 'invalid', reason: 'bad connect target', offset: 0 }], 'port required');
  t.same(read(t, 'CONNECT /x HTTP/1.1\r\n\r\n'), [{ kind: 'invalid', reason: 'bad connect target', offset: 0 }]);
  t.same(read(t, 'CONNECT http://blocked.test:443/ HTTP/1.1\r\n\r\n'), [{ kind: 'invalid', reason: 'bad connect target', offset: 0 }]);
  const userinfo = ambiguous(read(t, 'CONNECT allowed.test@blocked.test:443 HTTP/1.1\r\n\r\n'));
  t.match(userinfo, { reason: 'bad-target', stop: false, request: { host: null } });
});

t.test('EVASION 22: absolute-form naming a blocked host with an allowed Host header', async (t) => {
  const events = read(t, 'GET http://Blocked.Test:8080/a?b HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
  const r = only(t, events);
  t.match(r, { targetForm: 'absolute', host: 'blocked.test', port: 8080, hostHeader: 'allowed.test', path: '/a?b' });
  t.equal(ambiguous(events), undefined, 'the target wins: not ambiguous');
  t.match(only(t, read(t, fixture('curl-proxy-absolute-form'))), { host: 'blocked.test', hostHeader: 'allowed.test', path: '/page' });
  t.equal(only(t, read(t, 'GET https://blocked.test?q HTTP/1.1\r\nHost: a\r\n\r\n')).path, '/?q');
  t.equal(only(t, read(t, 'GET http://blocked.test HTTP/1.1\r\n\r\n')).path, '/');
  const userinfo = ambiguous(read(t, 'GET http://allowed.test@blocked.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n'));
  t.match(userinfo, { reason: 'bad-target', request: { host: null, hostHeader: 'allowed.test' } });
  t.match(ambiguous(read(t, 'GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n')), { reason: 'bad-target' });
});

t.test('EVASION 27: no name at all, and h2c prior knowledge', async (t) => {
  t.match(only(t, read(t, 'GET / HTTP/1.0\r\n\r\n')), { version: '1.0', host: null, hostHeader: null, connectionClose: true });
  t.match(only(t, read(t, 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n')), { version: '1.1', host: null });
  t.match(only(t, read(t, 'GET / HTTP/1.1\r\nHost:\r\n\r\n')), { host: null, hostHeader: '' }, 'empty Host');
  t.match(only(t, read(t, 'GET / HTTP/1.1\r\nHost: \t \r\n\r\n')), { host: null, hostHeader: '' });
  const h2 = read(t, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00');
  t.same(h2, [{ kind: 'invalid', reason: 'h2 preface', offset: 0 }]);
  t.same(read(t, 'GET / HTTP/2.0\r\n\r\n'), [{ kind: 'invalid', reason: 'unsupported version', offset: 0 }]);
  t.test('h2c upgrade is reported with its protocol, then a tunnel', async (t) => {
    const text = 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
    const events = read(t, text);
    t.equal(only(t, events).upgrade, 'h2c');
    const end = text.indexOf('PRI');
    t.same(events.slice(1), [{ kind: 'bodyEnd', end }, { kind: 'tunnel', offset: end }]);
  });
});

t.test('EVASION 28: duplicate Host headers', async (t) => {
  for (const second of ['blocked.test', 'allowed.test', 'ALLOWED.test']) {
    const events = read(t, `GET / HTTP/1.1\r\nHost: allowed.test\r\nX: 1\r\nHost: ${second}\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n`);
    const a = ambiguous(events);
    t.match(a, { reason: 'duplicate-host', offset: 0, stop: false, headStart: 0, request: { host: null, hostHeader: null } }, second);
    t.same(requests(events).map((r) => r.host), ['b'], 'reading goes on: the framing is known');
  }
  const absolute = ambiguous(read(t, 'GET http://blocked.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'));
  t.match(absolute, { reason: 'duplicate-host', request: { host: 'blocked.test' } }, 'even when the target names the host');
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\nHost: blocked.test/x\r\n\r\n')), { reason: 'bad-host', request: { host: null } });
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n')), { reason: 'bad-host' });
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\nHost: user@blocked.test\r\n\r\n')), { reason: 'bad-host' });
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\nHost: bl\xf6cked.test\r\n\r\n')), { reason: 'bad-host' }, 'raw non-ASCII');
});

t.test('EVASION 29: space before the colon, bare CR inside a header', async (t) => {
  const spaced = read(t, 'GET / HTTP/1.1\r\nHost : blocked.test\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n');
  t.match(ambiguous(spaced), { reason: 'space-before-colon', offset: 16, stop: false, request: { host: 'blocked.test' } });
  t.same(requests(spaced).map((r) => r.host), ['b']);
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\nHost\t: b\r\n\r\n')), { reason: 'space-before-colon' });
  t.match(ambiguous(read(t, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello')), { reason: 'space-before-colon', stop: true }, 'a framing header: stop');
  const cr = read(t, 'GET / HTTP/1.1\r\nX-A: 1\rHost: blocked.test\r\nHost: allowed.test\r\n\r\n');
  t.same(cr, [{ kind: 'ambiguous', reason: 'bare-cr', offset: 16, stop: true }]);
  t.same(read(t, 'GET / HTTP/1.1\r\nHost: a\r\r\n\r\n'), [{ kind: 'ambiguous', reason: 'bare-cr', offset: 16, stop: true }], 'CR CR LF');
  t.same(read(t, 'GET /\rx HTTP/1.1\r\n\r\n'), [{ kind: 'ambiguous', reason: 'bare-cr', offset: 0, stop: true }], 'in the request line');
  t.same(read(t, '\r\rGET / HTTP/1.1\r\n\r\n'), [{ kind: 'ambiguous', reason: 'bare-cr', offset: 0, stop: true }], 'before the request line');
  t.same(read(t, 'GET / HTTP/1.1\r\nHo st: a\r\n\r\n'), [{ kind: 'invalid', reason: 'bad header name', offset: 16 }]);
});

t.test('EVASION 30: obs-fold continuation lines', async (t) => {
  const folded = read(t, 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Long: one\r\n\ttwo\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n');
  const a = ambiguous(folded);
  t.match(a, { reason: 'obs-fold', offset: 43, stop: false, request: { host: 'a.test' } });
  t.same(a?.request?.headers[1], ['x-long', 'one two'], 'joined with one space');
  t.same(requests(folded).map((r) => r.host), ['b']);
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\nHost:\r\n blocked.test\r\n\r\n')), { reason: 'obs-fold', request: { host: 'blocked.test' } });
  t.match(ambiguous(read(t, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n')), { reason: 'obs-fold', stop: true });
  t.match(ambiguous(read(t, 'POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Content-Length: 5\r\n\r\nhello')), { reason: 'obs-fold', stop: true });
  t.match(ambiguous(read(t, 'GET / HTTP/1.1\r\n Host: blocked.test\r\nHost: a\r\n\r\n')), { reason: 'obs-fold', request: { host: 'a' } }, 'whitespace before the first field line');
});

t.test('EVASION 31: Content-Length with Transfer-Encoding, conflicting lengths, obfuscated chunked', async (t) => {
  const head = (fields: string) => `POST / HTTP/1.1\r\nHost: a.test\r\n${fields}\r\n`;
  const stops = (fields: string, reason: string, version = '1.1') => {
    const text = head(fields).replace('HTTP/1.1', `HTTP/${version}`) + '0\r\n\r\nGET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n';
    const events = read(t, text);
    t.same(events.map((e) => e.kind), ['ambiguous'], `${JSON.stringify(fields)}: reading stops`);
    t.match(events[0], { reason, stop: true, offset: 0, request: { host: 'a.test' } }, JSON.stringify(fields));
  };
  stops('Content-Length: 3\r\nTransfer-Encoding: chunked\r\n', 'cl-te');
  stops('Transfer-Encoding: chunked\r\nContent-Length: 0\r\n', 'cl-te');
  stops('Content-Length: 3\r\nContent-Length: 4\r\n', 'conflicting-length');
  stops('Content-Length: 3, 4\r\n', 'conflicting-length');
  for (const bad of ['+3', '-1', '0x3', '3 4', '', '3,', '1234567890123456', '3.0']) stops(`Content-Length: ${bad}\r\n`, 'bad-length');
  for (const te of ['xchunked', 'chunked, identity', 'identity', 'chunked;q=1', 'chunked, chunked', 'gzip', '', ',chunked', 'chunked,', 'chunk ed', '"chunked"']) {
    stops(`Transfer-Encoding: ${te}\r\n`, 'bad-te');
  }
  stops('Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n', 'bad-te');
  stops('Transfer-Encoding: chunked\r\n', 'te-in-http10', '1.0');

  const goes = (fields: string, body: string) => {
    const events = read(t, head(fields) + body + 'GET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
    t.same(requests(events).map((r) => r.host), ['a.test', 'blocked.test'], `${JSON.stringify(fields)}: framing understood`);
  };
  goes('Transfer-Encoding: Chunked\r\n', '0\r\n\r\n');
  goes('Transfer-Encoding: chunked\t\r\n', '0\r\n\r\n');
  goes('Transfer-Encoding: gzip, chunked\r\n', '2\r\nab\r\n0\r\n\r\n');
  goes('Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n', '2\r\nab\r\n0\r\n\r\n');
  goes('Content-Length: 3\r\nContent-Length: 3\r\n', 'abc');
  goes('Content-Length: 3, 3\r\n', 'abc');
  goes('Content-Length: 003\r\n', 'abc');
  t.equal(requests(read(t, head('Content-Length: 3, 3\r\n') + 'abc'))[0]!.contentLength, 3);

  t.test('chunked bodies parsed exactly, then the next request', async (t) => {
    const body = '4;ext="a b";x\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX: y\r\n\r\n';
    const events = read(t, head('Transfer-Encoding: chunked\r\n') + body + 'GET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
    t.same(requests(events).map((r) => r.host), ['a.test', 'blocked.test']);
    t.match(events[1], { kind: 'bodyEnd', end: head('Transfer-Encoding: chunked\r\n').length + body.length });
  });
  t.test('a bad chunk is invalid', async (t) => {
    const bad = (body: string, reason: string, offset: number) =>
      t.same(read(t, head('Transfer-Encoding: chunked\r\n') + body).slice(1), [{ kind: 'invalid', reason, offset: head('Transfer-Encoding: chunked\r\n').length + offset }], JSON.stringify(body));
    bad('x\r\n', 'bad chunk size', 0);
    bad('-1\r\n', 'bad chunk size', 0);
    bad(' 5\r\n', 'bad chunk size', 0);
    bad('5 \r\n', 'bad chunk size', 0);
    bad('0x5\r\n', 'bad chunk size', 0);
    bad('\r\n', 'bad chunk size', 0);
    bad('10000000000000000\r\n', 'bad chunk size', 0);
    bad('fffffffffffffff\r\n', 'bad chunk size', 0);
    bad('5\n', 'bad chunk terminator', 0);
    bad('5;a\rb\r\n', 'bad chunk extension', 0);
    bad('5\r\nhelloX\r\n', 'bad chunk terminator', 8);
    bad('5\r\nhello\rX', 'bad chunk terminator', 9);
    bad('5\r\nhello\r\n0\r\nbad trailer\r\n\r\n', 'bad trailer', 13);
    bad('5\r\nhello\r\n0\r\n\n', 'bad chunk terminator', 13);
    bad(`${'0'.repeat(4100)}\r\n`, 'chunk line too long', 4096);
  });
});

t.test('Upgrade: a tunnel only for HTTP/1.1 with Connection: upgrade', async (t) => {
  const docker = read(t, fixture('zeek-docker-upgrade-tcp'));
  t.same(docker.map((e) => e.kind), ['request', 'bodyEnd', 'tunnel']);
  t.equal(only(t, docker).upgrade, 'tcp');
  const ws = 'GET /chat HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85';
  t.same(read(t, ws).map((e) => e.kind), ['request', 'bodyEnd', 'tunnel']);
  const noConnection = read(t, 'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
  t.same(requests(noConnection).map((r) => r.host), ['a', 'blocked.test'], 'without Connection: upgrade the server ignores it');
  const http10 = read(t, 'GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.0\r\nHost: blocked.test\r\n\r\n');
  t.same(requests(http10).map((r) => r.host), [null, 'blocked.test'], 'HTTP/1.0 ignores Upgrade (RFC 9110 7.8)');
  const text = 'POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nokRAW';
  const end = text.indexOf('RAW');
  t.same(read(t, text).slice(1), [{ kind: 'bodyEnd', end }, { kind: 'tunnel', offset: end }], 'after the body');
  t.match(ambiguous(read(t, 'CONNECT a.test:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello')), { reason: 'connect-body', stop: true });
  t.same(read(t, 'CONNECT a.test:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n').map((e) => e.kind), ['request', 'tunnel']);
});

t.test('request-line rules', async (t) => {
  const invalid = (text: string, reason: string, offset = 0) =>
    t.same(read(t, text), [{ kind: 'invalid', reason, offset }], JSON.stringify(text));
  invalid('GET /\r\n\r\n', 'http/0.9');
  invalid('GET\r\n\r\n', 'bad request line');
  invalid('GET / HTTP/1.1 x\r\n\r\n', 'bad request line');
  invalid('GET / http/1.1\r\n\r\n', 'bad version');
  invalid('GET / HTTP/1.10\r\n\r\n', 'bad version');
  invalid('GET / HTTP/1.2\r\n\r\n', 'unsupported version');
  invalid('GET / HTTP/0.9\r\n\r\n', 'unsupported version');
  invalid('GET * HTTP/1.1\r\n\r\n', 'asterisk-form without OPTIONS');
  invalid('GET a.test:80 HTTP/1.1\r\n\r\n', 'bad target');
  invalid('GET /\x01 HTTP/1.1\r\n\r\n', 'bad target');
  invalid('G(T / HTTP/1.1\r\n\r\n', 'bad method');
  invalid('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'bad method');
  invalid('SSH-2.0-OpenSSH_9.2\r\n', 'bad request line');
  invalid('\r\n\r\nGET / HTTP/1.1\r\nHost a\r\n\r\n', 'bad header line', 20);
  invalid('GET / HTTP/1.1\r\n: a\r\n\r\n', 'bad header name', 16);
  invalid('GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n', 'bad header value', 16);
  t.match(only(t, read(t, 'OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n')), { targetForm: 'asterisk', path: '*', host: 'a.test' });
  t.match(only(t, read(t, 'get /x HTTP/1.1\r\nHost: a\r\n\r\n')), { method: 'get' }, 'methods are case-sensitive tokens');
  t.match(only(t, read(t, 'PROPFIND /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')), { method: 'PROPFIND', connectionClose: true });
  t.match(only(t, read(t, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')), { connectionClose: false });
  t.match(only(t, read(t, 'GET /%e4?\xe4 HTTP/1.1\r\nHost: a\r\n\r\n')), { target: '/%e4?\xe4' }, 'obs-text in the target is kept');
});

t.test('a TLS ClientHello is refused on its first byte', async (t) => {
  const ch = fixture('curl-connect-then-clienthello').subarray(112);
  t.same(feedSegments([ch.subarray(0, 1)]), [{ kind: 'invalid', reason: 'bad method', offset: 0 }]);
});

t.test('head size limit: the blank line must end within maxHeadBytes', async (t) => {
  const text = 'GET / HTTP/1.1\r\nHost: a\r\nX: ' + 'x'.repeat(100) + '\r\n\r\n';
  const exact = text.length;
  t.equal(requests(feedWhole(bytes(text), { maxHeadBytes: exact })).length, 1, 'exactly the limit');
  t.same(feedWhole(bytes(text), { maxHeadBytes: exact - 1 }), [{ kind: 'invalid', reason: 'head too large', offset: exact - 1 }]);
  t.same(feedBytewise(bytes(text), { maxHeadBytes: exact - 1 }), [{ kind: 'invalid', reason: 'head too large', offset: exact - 1 }]);
  const blank = '\r\n'.repeat(40);
  t.same(feedWhole(bytes(blank + text), { maxHeadBytes: exact + 79 }), [{ kind: 'invalid', reason: 'head too large', offset: exact + 79 }], 'leading empty lines count');
  const second = 'POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx' + text;
  t.equal(requests(feedWhole(bytes(second), { maxHeadBytes: exact })).length, 2, 'counted per request');
  t.same(feedWhole(bytes('G'.repeat(50)), { maxHeadBytes: 20 }), [{ kind: 'invalid', reason: 'head too large', offset: 20 }]);
  t.same(feedWhole(bytes('G'.repeat(19) + '\x01'), { maxHeadBytes: 20 }), [{ kind: 'invalid', reason: 'bad method', offset: 0 }]);
  t.same(feedWhole(bytes('G'.repeat(20) + '\x01'), { maxHeadBytes: 20 }), [{ kind: 'invalid', reason: 'head too large', offset: 20 }]);
});

t.test('trailer section limit', async (t) => {
  const text = 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n' + 'X: y\r\n'.repeat(10) + '\r\n';
  t.equal(feedWhole(bytes(text), { maxTrailerBytes: 62 }).length, 2);
  t.same(feedWhole(bytes(text), { maxTrailerBytes: 61 }).slice(1), [{ kind: 'invalid', reason: 'trailers too large', offset: 50 + 61 }]);
});
