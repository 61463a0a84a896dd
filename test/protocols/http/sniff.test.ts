// looksLikeHttp: the cheap first-bytes sniff that picks the HTTP analyzer.
import t from 'tap';
import { HttpRequestReader, looksLikeHttp } from '../../../src/protocols/http/request.js';
import { FIXTURES, bytes, feedWhole, fixture } from './helpers.js';

t.test('every HTTP fixture is HTTP from its first 8 bytes on', async (t) => {
  for (const name of FIXTURES) {
    const data = fixture(name);
    t.equal(looksLikeHttp(data.subarray(0, 8)), 'yes', name);
    t.equal(looksLikeHttp(data), 'yes', `${name} whole`);
  }
});

t.test('prefixes too short to tell are maybe', async (t) => {
  for (const text of ['', 'G', 'GE', 'GET', 'P', 'PO', 'CONNEC', '\r\n', '\r\n\r\nGE', '\n']) {
    t.equal(looksLikeHttp(bytes(text)), 'maybe', JSON.stringify(text));
  }
  t.equal(looksLikeHttp(bytes('\r\nGET ')), 'yes', 'after leading empty lines');
  t.equal(HttpRequestReader.looksLikeHttp(bytes('PRI * HTTP/2.0\r\n')), 'yes', 'the h2 preface goes to the HTTP reader, which names it');
});

t.test('extension methods: decided on the whole first line', async (t) => {
  t.equal(looksLikeHttp(bytes('MKCALENDAR /c HTTP/1.1\r\nHost: a\r\n')), 'yes');
  t.equal(looksLikeHttp(bytes('BREW /pot HTTP/1.0\n')), 'yes');
  t.equal(looksLikeHttp(bytes('BREW /pot HT')), 'maybe');
  t.equal(looksLikeHttp(bytes('BREW')), 'maybe');
  t.equal(looksLikeHttp(bytes('BREW /pot HTCPCP/1.0\r\n')), 'no');
  // A bare CR does not end the line: a lenient server (RFC 9112 section 3; Squid by default) reads it as a separator.
  t.equal(looksLikeHttp(bytes('BREW /pot HTTP/1.0\r')), 'maybe', 'a request line up to a CR: its LF awaited');
  t.equal(looksLikeHttp(bytes('ls -la\r')), 'maybe', 'so is a typed command and Enter (CR): `ls\\r-la HTTP/1.1` may follow');
  t.equal(looksLikeHttp(bytes('ls\r')), 'no', 'a typed word and Enter right after it: no request (Docker attach after Upgrade: tcp)');
  t.equal(looksLikeHttp(bytes('FOO\r/ HTTP/1.1\r\n')), 'no', 'so an extension method and a bare CR is no request either (open: a lenient server may read it)');
  t.equal(looksLikeHttp(bytes('FOO /a\rb HTTP/1.1\r\n')), 'yes', 'a CR inside the line is a separator to some server: the reader judges');
});

t.test('lenient separators (HTAB, VT, FF, bare CR) make a request line too', async (t) => {
  for (const text of ['GET\r/ HTTP/1.1\r\n', 'GET\x0b/ HTTP/1.1\r\n', 'GET\x0c/', 'GET\t/', 'FOO /\rHTTP/1.1\r\n',
    'FOO\x0b/ HTTP/1.1\r\n', 'FOO / HTTP/1.1\r\r\n', 'FOO\t/\tHTTP/1.1\x0c\n']) {
    t.equal(looksLikeHttp(bytes(text)), 'yes', JSON.stringify(text));
  }
  t.equal(looksLikeHttp(bytes('GET\x01/ HTTP/1.1\r\n')), 'no', 'another control byte after the method is no separator');
  // Python's http.server splits on str.isspace and strips it in front.
  for (const text of ['GET\xa0/\xa0HTTP/1.1\r\n', 'FOO\x1f/ HTTP/1.1\r\n', 'FOO /\x85HTTP/1.1\r\n', ' GET / HTTP/1.1\r\n', '\x0bFOO / HTTP/1.1\r\n']) {
    t.equal(looksLikeHttp(Buffer.from(text, 'latin1')), 'yes', JSON.stringify(text));
  }
});

t.test('Node\'s methods without a version (HTTP/0.9 with headers to it), RTSP\'s, and a version in any case', async (t) => {
  for (const text of ['PURGE /\r\nHost: a\r\n\r\n', 'M-SEARCH * HTTP/1.1\r\n', 'QUERY /', 'DESCRIBE / RTSP/1.0\r\n', 'SOURCE / ICE/1.0\r\n',
    'FOO / http/1.1\r\n', 'FOO / Http/1.0\n']) {
    t.equal(looksLikeHttp(bytes(text)), 'yes', JSON.stringify(text));
  }
  t.equal(looksLikeHttp(bytes('PURG')), 'maybe', 'a prefix of one');
});

t.test('other protocols are no', async (t) => {
  const ch = fixture('curl-connect-then-clienthello').subarray(112);
  t.equal(looksLikeHttp(ch.subarray(0, 1)), 'no', 'TLS record, first byte');
  t.equal(looksLikeHttp(ch), 'no', 'TLS ClientHello');
  const sip = fixture('sip-register');
  t.equal(looksLikeHttp(sip), 'no', 'SIP REGISTER');
  t.equal(looksLikeHttp(sip.subarray(0, 12)), 'maybe', 'SIP before its line ends');
  const ssh = fixture('ssh-client-start');
  t.equal(looksLikeHttp(ssh), 'no', 'SSH banner');
  for (const text of ['USER bob\r\n', '\x00\x00\x00\x08\x04\xd2\x16\x2f', '{"a":1}', 'GET\x00']) {
    t.equal(looksLikeHttp(bytes(text)), 'no', JSON.stringify(text));
  }
  t.equal(looksLikeHttp(bytes('A'.repeat(40))), 'maybe', 'a long token without a space: its space may follow');
  t.equal(looksLikeHttp(bytes(`FOO /${'a'.repeat(5000)}`)), 'maybe', 'nor is a long unfinished line no: the caller bounds the wait');
});

t.test('the reader itself refuses the look-alikes', async (t) => {
  t.same(feedWhole(fixture('sip-register')), [{ kind: 'invalid', reason: 'bad version', offset: 0 }]);
  t.same(feedWhole(fixture('ssh-client-start')), [{ kind: 'invalid', reason: 'bad request line', offset: 0 }]);
});
