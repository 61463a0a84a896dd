/**
 * A cheap look at the first bytes of a client stream to tell whether the HTTP/1.x reader
 * should take it.
 */
import { CR, LF, TCHAR } from './syntax.js';

/**
 * Bytes a server may take between the parts of a request line: SP, and, leniently (RFC 9112
 * section 3, Squid's default relaxed parser), HTAB, VT, FF and a bare CR; Python's http.server
 * splits on whatever `str.isspace` calls space (0x1c-0x1f, 0x85, 0xa0 too) and strips it in front.
 */
const SEPARATORS = [0x20, 0x09, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0];
const SEPARATOR = new Uint8Array(256);
for (const b of SEPARATORS) SEPARATOR[b] = 1;
/** The same bytes as a regular expression character class. */
const SEP_CLASS = `[${SEPARATORS.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}]`;

/**
 * Methods that make a stream HTTP as soon as a separator follows them: RFC 9110's, the h2 preface's,
 * and every method Node's parser (llhttp) takes by default, where a request line without a version
 * (`PURGE /`) is HTTP/0.9 whose headers it still reads, and RTSP's and ICE's, which it takes too.
 */
const KNOWN_METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'PRI',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH',
  'BIND', 'REBIND', 'UNBIND', 'ACL', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY',
  'SUBSCRIBE', 'UNSUBSCRIBE', 'PURGE', 'MKCALENDAR', 'LINK', 'UNLINK', 'SOURCE', 'QUERY',
  'DESCRIBE', 'ANNOUNCE', 'SETUP', 'PLAY', 'PAUSE', 'TEARDOWN', 'GET_PARAMETER', 'SET_PARAMETER',
  'REDIRECT', 'RECORD', 'FLUSH',
].map((m) => Buffer.from(m, 'latin1'));

/**
 * How many bytes a stream analyzer gathers while the sniff says 'maybe' before it reads the
 * stream as HTTP anyway (the request reader's limits then apply).
 */
export const SNIFF_MAX_LINE_BYTES = 4096;

// Any target and any HTTP version number: nginx reads `HTTP/1.2` or `HTTP/1.0001` as HTTP/1.1, and
// older releases take spaces and control bytes in the target, so a line ending so is read as
// HTTP (whose reader refuses what it must), never `unknown`. The separators are a lenient
// server's (SEPARATOR): `GET\r/ HTTP/1.1` is a request to Squid; Apache's `HttpProtocolOptions
// Unsafe` takes the version in any case.
const VERSION_TAIL = new RegExp(`^[!#$%&'*+\\-.^_\`|~0-9A-Za-z]+${SEP_CLASS}+[^\\n]*${SEP_CLASS}[Hh][Tt][Tt][Pp]\\/[0-9]+\\.[0-9]+${SEP_CLASS}*$`);

/**
 * 'yes' when `firstBytes` (the start of a client stream) begin like an HTTP/1.x request: a known
 * method and a separator, or a whole first line `token SEP target SEP HTTP/d.d`; 'maybe' when too
 * few bytes arrived to tell (empty, only leading empty lines, a prefix of a known method, or an
 * unfinished first line made of a token and maybe a separator and more, up to its LF: a bare CR
 * does not end it, since a lenient server reads one as a separator), however long: a server
 * reads an extension method or a long target split over segments as one request line, so the
 * caller bounds its wait (SNIFF_MAX_LINE_BYTES) and does not call such a stream `no`; 'no' otherwise.
 */
export function looksLikeHttp(firstBytes: Uint8Array): 'yes' | 'no' | 'maybe' {
  let s = 0;
  // Empty lines before the request line are skipped (RFC 9112 section 2.2), other space by Python.
  while (s < firstBytes.length && (firstBytes[s] === LF || SEPARATOR[firstBytes[s]!] === 1)) s++;
  const rest = firstBytes.subarray(s);
  if (rest.length === 0) return 'maybe';
  let prefixOfKnown = false;
  for (const m of KNOWN_METHODS) {
    const n = Math.min(m.length, rest.length);
    let same = true;
    for (let i = 0; i < n && same; i++) same = rest[i] === m[i];
    if (!same) continue;
    // Ended before the byte after the method could be seen, or a separator follows it.
    if (rest.length <= m.length) prefixOfKnown = true;
    else if (SEPARATOR[rest[m.length]!] === 1) return 'yes';
  }
  if (prefixOfKnown) return 'maybe';
  // An extension method: decide on the whole first line.
  let i = 0;
  while (i < rest.length && TCHAR[rest[i]!] === 1) i++;
  if (i === 0) return 'no';
  if (i === rest.length) return 'maybe';
  // A bare CR right after an extension method is taken for the end of a line that is no request:
  // an interactive session after `Upgrade: tcp` types a word and Enter (CR, never LF), and must
  // not be held. (A lenient server might read `FOO\r/ HTTP/1.1` as a request: left open.)
  if (SEPARATOR[rest[i]!] !== 1 || rest[i] === CR) return 'no';
  const lf = rest.indexOf(LF);
  // No server takes a NUL in a request line: one before its end makes the stream no request (a
  // git:// request sends one and waits for the server).
  if (lf < 0) return rest.indexOf(0) >= 0 ? 'no' : 'maybe';
  return VERSION_TAIL.test(Buffer.from(rest.buffer, rest.byteOffset, lf).toString('latin1')) ? 'yes' : 'no';
}
